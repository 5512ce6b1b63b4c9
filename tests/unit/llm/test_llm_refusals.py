"""What ``models import --kind llm`` refuses, each with a one-line reason, nothing registered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inhouse.config import load_settings
from inhouse.errors import InvalidInputError
from inhouse.kinds.llm.importing import IMPORTING, LLMImportOptions
from inhouse.registry import Registry
from tests.hf_tiny import make_tiny_bert


def _refused(registry: Registry, source: Path, home: Path, match: str) -> None:
    settings = load_settings(home=str(home))
    with pytest.raises(InvalidInputError, match=match):
        IMPORTING.import_model(settings, registry, source, name="bad", options=LLMImportOptions())
    assert registry.versions("bad") == []


def _edit_json(path: Path, **changes: object) -> None:
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))


def test_pickle_weights_are_refused(registry: Registry, tiny: Path, tmp_path: Path) -> None:
    (tiny / "model.safetensors").rename(tiny / "pytorch_model.bin")
    _refused(registry, tiny, tmp_path, "pickle-only weights")


def test_remote_code_is_refused(registry: Registry, tiny: Path, tmp_path: Path) -> None:
    _edit_json(tiny / "config.json", auto_map={"AutoModelForCausalLM": "modeling_x.XForCausalLM"})
    _refused(registry, tiny, tmp_path, "asks for remote code")


def test_remote_code_in_the_tokenizer_config_is_refused(
    registry: Registry, tiny: Path, tmp_path: Path
) -> None:
    _edit_json(tiny / "tokenizer_config.json", auto_map={"AutoTokenizer": ["x.XTokenizer", None]})
    _refused(registry, tiny, tmp_path, "asks for remote code")


def test_an_encoder_is_not_a_causal_lm(registry: Registry, tmp_path: Path) -> None:
    bert = make_tiny_bert(tmp_path / "bert")
    _refused(registry, bert, tmp_path, "not a causal language model.*--kind text")


def test_missing_files_and_paths_are_named(registry: Registry, tiny: Path, tmp_path: Path) -> None:
    _refused(registry, tmp_path / "nowhere", tmp_path, "does not exist")
    (tiny / "tokenizer.json").unlink()
    _refused(registry, tiny, tmp_path, "has no tokenizer")
    (tiny / "model.safetensors").unlink()
    _refused(registry, tiny, tmp_path, "has no weights")
    (tiny / "config.json").unlink()
    _refused(registry, tiny, tmp_path, "missing config.json")


def test_a_file_that_is_not_gguf_is_refused(registry: Registry, tiny: Path, tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes((tiny / "model.safetensors").read_bytes())
    _refused(registry, fake, tmp_path, "is not a GGUF file")
    assert not (tmp_path / "cache" / "gguf").exists() or not any(
        (tmp_path / "cache" / "gguf").iterdir()
    )
    truncated = tmp_path / "short.gguf"
    truncated.write_bytes(b"GGUF\x03\x00\x00\x00")  # the magic bytes, then nothing usable
    _refused(registry, truncated, tmp_path, "transformers cannot read this GGUF")
    assert [p.name for p in (tmp_path / "cache" / "gguf").iterdir()] == []  # no half result


def test_oversize_configs_are_refused(registry: Registry, tiny: Path, tmp_path: Path) -> None:
    config = tiny / "config.json"
    original = config.read_text()
    _edit_json(config, num_hidden_layers=200, hidden_size=4096, intermediate_size=11008)
    _refused(registry, tiny, tmp_path, "describes .* parameters but the weights hold")
    _edit_json(config, padding="x" * (1 << 20))
    _refused(registry, tiny, tmp_path, "larger than 1048576 bytes")
    config.write_text(original)
    _edit_json(config, max_position_embeddings=0)
    _refused(registry, tiny, tmp_path, "max_position_embeddings must be a positive integer")


def test_weights_that_do_not_fit_the_config_are_refused(
    registry: Registry, tiny: Path, tmp_path: Path
) -> None:
    _edit_json(tiny / "config.json", num_hidden_layers=1, intermediate_size=256)
    _refused(registry, tiny, tmp_path, "the weights do not fit the config")


def test_quantized_checkpoints_are_refused(registry: Registry, tiny: Path, tmp_path: Path) -> None:
    _edit_json(tiny / "config.json", quantization_config={"quant_method": "gptq", "bits": 4})
    _refused(registry, tiny, tmp_path, "gptq-quantized checkpoint")


def test_options_are_checked(registry: Registry, tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        LLMImportOptions(max_context=0)
    with pytest.raises(ValueError, match="Extra inputs"):
        LLMImportOptions.model_validate({"max_length": 4})
