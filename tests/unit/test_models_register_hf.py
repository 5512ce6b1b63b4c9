"""``inhouse models register --hf DIR``: a trained Hugging Face sequence classifier becomes a
text ``classifier`` version, head and labels included; an encoder directory is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inhouse.cli import main
from inhouse.config import load_settings
from inhouse.errors import InvalidInputError
from inhouse.kinds.text.classifier_dir import label_names
from inhouse.kinds.text.versions import load_text
from inhouse.models.text import predict_proba
from inhouse.services import registry
from tests.hf_tiny import make_tiny_bert

LABELS = ["card_arrival", "refund", "transfer"]


def make_classifier_dir(tmp_path: Path) -> Path:
    """A tiny BERT with a (random) three-class head saved as a user would: save_pretrained."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    encoder = make_tiny_bert(tmp_path / "encoder")
    torch.manual_seed(3)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(encoder), num_labels=3, id2label=dict(enumerate(LABELS))
    )
    out = tmp_path / "classifier"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(encoder)).save_pretrained(out)
    return out


def _register(home: Path, *argv: str) -> int:
    return main(["--home", str(home), "models", "register", "--name", "intents", *argv])


def test_a_classifier_dir_registers_with_its_head_and_answers_as_it_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = make_classifier_dir(tmp_path)
    assert _register(tmp_path, "--hf", str(source), "--max-length", "16") == 0
    assert "intents v1: hf_text (hf)" in capsys.readouterr().out
    reg = registry(load_settings(home=str(tmp_path)))
    info = reg.get("intents", "champion")
    assert (info.spec["role"], info.spec["class_names"]) == ("classifier", LABELS)
    assert info.lineage["source"]["kind"] == "huggingface_dir"
    assert "model.safetensors" in info.lineage["source"]["files"]
    module, tokenizer, spec = load_text(reg, info)
    texts = ["my card has not arrived", "please send a wire transfer"]
    ours = predict_proba(module, tokenizer, texts, max_length=16)
    original = AutoModelForSequenceClassification.from_pretrained(str(source)).eval()
    batch = AutoTokenizer.from_pretrained(str(source))(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        theirs = torch.softmax(original(**batch).logits, dim=-1).numpy()
    assert ours == pytest.approx(theirs, abs=1e-5)


def test_an_encoder_dir_or_bad_labels_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    encoder = make_tiny_bert(tmp_path / "encoder")
    assert _register(tmp_path, "--hf", str(encoder)) == 2
    assert "not a *ForSequenceClassification" in capsys.readouterr().err
    assert registry(load_settings(home=str(tmp_path))).models() == []
    classifier = {"architectures": ["BertForSequenceClassification"]}
    with pytest.raises(InvalidInputError, match="classes 0..n-1"):
        label_names(classifier | {"id2label": {"0": "a", "2": "b"}})
    with pytest.raises(InvalidInputError, match="map class indexes"):
        label_names(classifier | {"id2label": {"x": "a"}})
    assert label_names(classifier | {"id2label": {"1": "b", "0": "a"}}) == ["a", "b"]


def test_a_registered_classifier_is_retrained_by_the_text_kind(tmp_path: Path) -> None:
    from inhouse import services
    from inhouse.config import CoordinatorSettings
    from inhouse.data import describe
    from inhouse.data.text_import import import_text_csv
    from inhouse.kinds import kind_for_spec
    from inhouse.kinds.updating import RetrainJob, RetrainRun
    from tests.hf_tiny import make_rows, write_csv

    settings = load_settings(home=str(tmp_path))
    engine = services.engine(settings)
    rows = write_csv(tmp_path / "intents.csv", make_rows(90))
    import_text_csv(engine, name="intents", csv_path=rows, label_column="category")
    source = make_classifier_dir(tmp_path)
    argv = ["--hf", str(source), "--dataset", "intents", "--max-length", "16"]
    assert _register(tmp_path, *argv) == 0
    reg = registry(settings)
    champion = reg.get("intents", "champion")
    assert champion.lineage["dataset"] == "intents"
    last = int(describe(engine, "intents").last_id or 0)
    job = RetrainJob(run_id="retrain-intents-0", after_id=0, up_to_id=last, reasons=["manual"])
    cs = CoordinatorSettings(model="intents", dataset="intents", epochs=1, text_method="head")
    run = RetrainRun(reg, engine, cs, job)
    candidate = kind_for_spec(champion.spec).updating.train_candidate(run)
    assert candidate.spec["role"] == "adapter" and candidate.spec["class_names"] == LABELS
    assert candidate.lineage["parent"] == {"model": "intents", "version": 1}
