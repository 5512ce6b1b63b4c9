"""Text models through the registry: import (encrypted), int8, head-only and LoRA adapters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inhouse.compress import compress
from inhouse.config import CompressionSettings
from inhouse.crypto import KeyRing
from inhouse.errors import InvalidInputError
from inhouse.kinds import register_module
from inhouse.kinds.text.versions import import_model_dir, load_text, register_adapter
from inhouse.models.lora import adapter_state, lora_config, prepare_incremental, trainable_fraction
from inhouse.models.text import classifier_from, encode_texts, predict_proba
from inhouse.registry import Registry, float_version
from inhouse.schema import get_engine
from tests.hf_tiny import CLASSES, make_rows, make_tiny_bert

TEXTS = [text for text, _ in make_rows(12, seed=1)]


@pytest.fixture()
def registry(tmp_path: Path) -> Registry:
    ring = KeyRing(tmp_path / "keys")
    ring.init()
    return Registry(
        engine=get_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"),
        root=tmp_path / "registry",
        keyring=ring,
    )


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return make_tiny_bert(tmp_path / "tiny")


def _nudge(model: torch.nn.Module, seed: int) -> None:
    """Stand-in for training: move every trainable parameter a little."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn(param.shape, generator=generator))


def test_import_encrypts_weights_and_tokenizer_and_loads_the_same_encoder(
    registry: Registry, tiny: Path
) -> None:
    info = import_model_dir(registry, tiny, name="tiny-bert", max_length=32)
    assert info.encrypted and info.spec["role"] == "encoder" and info.spec["max_length"] == 32
    files = sorted(p.name for p in info.path.iterdir())
    assert files == ["lineage.json.enc", "weights.safetensors.enc"]
    vocab_word = b"reimburse"
    assert vocab_word not in (info.path / "weights.safetensors.enc").read_bytes()
    assert set(info.lineage["source"]["files"]) >= {"config.json", "model.safetensors"}
    module, tokenizer, spec = load_text(registry, info)
    from transformers import AutoModel, AutoTokenizer

    reference = AutoModel.from_pretrained(tiny, local_files_only=True).eval()
    expected = AutoTokenizer.from_pretrained(tiny, local_files_only=True)
    ids, mask = encode_texts(tokenizer, TEXTS, max_length=32)
    ref_ids, _ = encode_texts(expected, TEXTS, max_length=32)
    assert torch.equal(ids, ref_ids)
    with torch.inference_mode():
        ours, theirs = module(ids, mask), reference(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(ours, theirs.last_hidden_state)
    assert spec["tokenizer"]["special_tokens"]["pad_token"] == "[PAD]"


def test_classifier_and_its_int8_version_round_trip(registry: Registry, tiny: Path) -> None:
    base = import_model_dir(registry, tiny, name="tiny-bert")
    encoder, tokenizer, base_spec = load_text(registry, base)
    model, spec = classifier_from(encoder, base_spec, class_names=CLASSES, max_length=32)
    _nudge(model, 0)
    fp32 = register_module(registry, "intents", module=model, spec=spec, metrics={}, lineage={})
    int8 = compress(model, CompressionSettings(prune_amount=0.0, quantize_embeddings=True))
    small = register_module(
        registry,
        "intents",
        module=int8,
        spec=spec,
        metrics={},
        fmt="compressed",
        lineage={"parent": {"model": "intents", "version": fp32.version}},
    )
    assert small.size_bytes < fp32.size_bytes
    assert float_version(registry, small).version == fp32.version
    loaded, tok, _ = load_text(registry, small)
    expected = predict_proba(int8, tokenizer, TEXTS, max_length=32)
    torch.testing.assert_close(
        torch.from_numpy(predict_proba(loaded, tok, TEXTS, max_length=32)),
        torch.from_numpy(expected),
    )
    with pytest.raises(InvalidInputError, match="LoRA rank"):
        lora_config(r=0)


@pytest.mark.parametrize("method", ["lora", "head"])
def test_adapter_is_small_versioned_against_its_base_and_reloads(
    registry: Registry, tiny: Path, method: str
) -> None:
    base_info = import_model_dir(registry, tiny, name="tiny-bert")
    encoder, tokenizer, base_spec = load_text(registry, base_info)
    parent, spec = classifier_from(encoder, base_spec, class_names=CLASSES, max_length=32)
    _nudge(parent, 1)
    parent_info = register_module(
        registry, "intents", module=parent, spec=spec, metrics={}, lineage={}
    )
    model, _, _ = load_text(registry, parent_info)
    lora = lora_config(r=4) if method == "lora" else None
    prepare_incremental(model, method, lora=lora)
    assert 0 < trainable_fraction(model) < 0.5
    _nudge(model, 2)
    expected = predict_proba(model, tokenizer, TEXTS, max_length=32)
    adapter = register_adapter(
        registry,
        "intents-team-a",
        model=model,
        method=method,
        base=parent_info,
        class_names=CLASSES,
        max_length=32,
        lora=lora,
        metrics={"test_accuracy": 0.5},
        lineage={"dataset": "intents"},
    )
    assert adapter.spec["role"] == "adapter" and adapter.encrypted
    assert adapter.lineage["base"] == {"model": "intents", "version": parent_info.version}
    assert adapter.size_bytes < 0.5 * parent_info.size_bytes
    assert set(adapter.spec["tensors"]) == set(adapter_state(model, method))
    merged, tok, merged_spec = load_text(registry, adapter)
    assert merged_spec["method"] == method
    assert not any("lora" in name for name in merged.state_dict())  # merged into the base
    got = predict_proba(merged, tok, TEXTS, max_length=32)
    torch.testing.assert_close(
        torch.from_numpy(got), torch.from_numpy(expected), atol=1e-5, rtol=1e-4
    )
    base_only = predict_proba(load_text(registry, parent_info)[0], tok, TEXTS, max_length=32)
    assert not torch.allclose(torch.from_numpy(base_only), torch.from_numpy(got), atol=1e-4)
