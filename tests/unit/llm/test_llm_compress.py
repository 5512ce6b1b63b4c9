"""int8 LLM copies: the quantized module against the float one, the encrypted round trip through
the registry, the perplexity gate, the report, the privacy claim kept, the refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from inhouse.compress.layers import Int8Embedding, Int8Linear
from inhouse.config import CompressionSettings, GateSettings, load_settings
from inhouse.errors import IntegrityError, InvalidInputError
from inhouse.kinds import kind_named, register_module
from inhouse.kinds.llm.compressing import COMPRESSING
from inhouse.kinds.llm.importing import IMPORTING, LLMImportOptions
from inhouse.kinds.llm.loaded import load_llm
from inhouse.kinds.llm.measure import heldout_text
from inhouse.kinds.llm.quantize import TokenInt8Linear, load_quantized_module, quantize_module
from inhouse.registry import ModelVersion, Registry
from tests.llm_fixtures import sentences

SETTINGS = CompressionSettings(prune_amount=0.0)


def _import(registry: Registry, source: Path, home: Path) -> ModelVersion:
    settings = load_settings(home=str(home))
    info = IMPORTING.import_model(
        settings, registry, source, name="tiny", options=LLMImportOptions()
    )
    registry.set_alias("tiny", "champion", info.version)
    return info


def _batch(tokenizer: object) -> torch.Tensor:
    ids = [tokenizer(s)["input_ids"] for s in sentences(8, seed=5)]  # type: ignore[operator]
    width = min(len(i) for i in ids)
    return torch.tensor([i[:width] for i in ids])


def test_token_scaled_dynamic_linear_matches_the_float_product_with_and_without_bias() -> None:
    torch.manual_seed(0)
    for bias in (False, True):
        linear = nn.Linear(256, 192, bias=bias)
        layer = TokenInt8Linear.of(Int8Linear.from_linear(linear, mode="dynamic"))
        x = torch.randn(3, 5, 256)
        x[0, 0] *= 100.0  # one loud token must not flatten the others' resolution
        with torch.no_grad():
            expected, got = linear(x), layer(x)
        cosine = F.cosine_similarity(got.flatten(1), expected.flatten(1), dim=-1)
        assert float(cosine.min()) > 0.999
        quiet = (got[1:] - expected[1:]).abs().max() / expected[1:].abs().max()
        assert float(quiet) < 0.02


@pytest.mark.parametrize("runtime", ["weight_only", "dynamic"])
def test_quantized_module_keeps_the_logits_and_every_weight_is_int8(
    registry: Registry, tiny: Path, tmp_path: Path, runtime: str
) -> None:
    llm = load_llm(registry, _import(registry, tiny, tmp_path / "home"), device="cpu")
    int8, record = quantize_module(llm.module, runtime=runtime)  # type: ignore[arg-type]
    assert record["linear_layers"] == {runtime: 15} and record["activations"]
    assert isinstance(int8.model.embed_tokens, Int8Embedding)  # type: ignore[union-attr]
    assert isinstance(int8.lm_head, TokenInt8Linear)
    assert not any(isinstance(m, (nn.Linear, nn.Embedding)) for m in int8.modules())
    assert isinstance(llm.module.lm_head, nn.Linear)  # the parent is untouched
    batch = _batch(llm.tokenizer)
    with torch.inference_mode():
        ours, theirs = int8(batch).logits, llm.module(batch).logits
    cosine = F.cosine_similarity(ours.flatten(0, 1), theirs.flatten(0, 1), dim=-1)
    assert float(cosine.min()) > 0.99
    assert float((ours.argmax(-1) == theirs.argmax(-1)).float().mean()) > 0.9


def test_compress_registers_an_encrypted_smaller_int8_version_and_promotes_it(
    registry: Registry, tiny: Path, tmp_path: Path
) -> None:
    assert kind_named("llm").compressing is COMPRESSING
    parent = _import(registry, tiny, tmp_path / "home")
    summary = COMPRESSING.compress(
        registry=registry, engine=None, model="tiny", ref="champion",
        settings=SETTINGS, gate=GateSettings(), promote=True,
    )  # fmt: skip
    info = registry.get("tiny", str(summary["version"]))
    assert info.spec["role"] == "int8" and info.format == "compressed" and info.encrypted
    assert info.spec["quantization"]["activations"] == "dynamic_per_token"
    assert summary["gate"] == {"passed": True, "reasons": []} and summary["promoted"]
    assert registry.aliases("tiny")["champion"] == info.version
    assert info.lineage["parent"] == {"model": "tiny", "version": parent.version}
    assert info.lineage["privacy"] == {"dp": False}
    assert summary["size_ratio"] == parent.size_bytes / info.size_bytes >= 2.0
    sealed = b"".join(p.read_bytes() for p in info.path.iterdir() if "lineage" not in p.name)
    assert b"embed_tokens" not in sealed and b"<|im_start|>" not in sealed
    ppl = summary["perplexity"]
    assert 1.0 < ppl["parent"] and abs(summary["perplexity_increase"]) <= 0.05
    assert ppl["compressed"] / ppl["parent"] - 1 == pytest.approx(summary["perplexity_increase"])
    assert all(v > 0 for v in summary["decode_tokens_per_s"].values())
    markdown = summary["report_markdown"]
    for text in ("size stored (bytes)", "decode tokens/s", "held-out perplexity", "Apache-2.0"):
        assert text in markdown
    assert "is now the champion" in markdown
    metrics = info.metrics
    assert metrics["gate_passed"] and metrics["perplexity"] == ppl["compressed"]

    # what serving loads is what was measured, and it generates
    loaded = load_llm(registry, info, device="cpu")
    again, _ = quantize_module(load_llm(registry, parent, device="cpu").module)
    assert isinstance(loaded.module.lm_head, TokenInt8Linear)
    batch = _batch(loaded.tokenizer)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.module(batch).logits, again(batch).logits)
        out = loaded.module.generate(batch[:1], max_new_tokens=6, do_sample=False)
    assert batch.shape[1] < out.shape[1] <= batch.shape[1] + 6


def test_the_gate_refuses_a_perplexity_increase_over_its_limit(
    registry: Registry, tiny: Path, tmp_path: Path
) -> None:
    parent = _import(registry, tiny, tmp_path / "home")
    summary = COMPRESSING.compress(
        registry=registry, model="tiny", settings=SETTINGS,
        gate=GateSettings(max_perplexity_increase=-1.0, min_size_ratio=100.0), promote=True,
    )  # fmt: skip
    assert not summary["gate"]["passed"] and not summary["promoted"]
    reasons = summary["gate"]["reasons"]
    assert len(reasons) == 2 and "perplexity rises" in reasons[0]
    assert "less than 100.0x" in reasons[1]
    assert registry.aliases("tiny")["champion"] == parent.version
    assert f"v{parent.version} stays champion" in summary["report_markdown"]
    assert registry.get("tiny", str(summary["version"])).metrics["gate_passed"] is False


def test_a_dp_parent_keeps_its_claim_and_pruning_is_reported_as_ignored(
    registry: Registry, tiny: Path, tmp_path: Path
) -> None:
    first = _import(registry, tiny, tmp_path / "home")
    privacy = {"dp": True, "epsilon": 3.0, "delta": 1e-5}
    module = load_llm(registry, first, device="cpu").module
    dp = register_module(
        registry, "tiny", module=module, spec=first.spec, metrics={},
        lineage={"parent": None, "privacy": privacy},
    )  # fmt: skip
    summary = COMPRESSING.compress(
        registry=registry, model="tiny", ref=str(dp.version),
        settings=CompressionSettings(), gate=GateSettings(), promote=True,
    )  # fmt: skip
    info = registry.get("tiny", str(summary["version"]))
    assert info.lineage["privacy"] == privacy
    assert "prune_amount=0.9 ignored" in summary["report_markdown"]
    assert not summary["promoted"] and "not the champion" in summary["message"]


def test_refusals(registry: Registry, tiny: Path, tmp_path: Path) -> None:
    parent = _import(registry, tiny, tmp_path / "home")
    with pytest.raises(InvalidInputError, match="int8 quantization only"):
        COMPRESSING.compress(
            registry=registry, model="tiny", settings=CompressionSettings(quantize="none"),
            gate=GateSettings(),
        )  # fmt: skip
    summary = COMPRESSING.compress(
        registry=registry, model="tiny", settings=SETTINGS, gate=GateSettings()
    )
    with pytest.raises(InvalidInputError, match="already int8"):
        COMPRESSING.compress(
            registry=registry, model="tiny", ref=str(summary["version"]), settings=SETTINGS,
            gate=GateSettings(),
        )  # fmt: skip
    with pytest.raises(IntegrityError, match="not an int8 LLM version"):
        load_quantized_module(registry, parent)


def test_the_heldout_text_ships_with_the_package() -> None:
    text = heldout_text()
    assert len(text) > 15_000 and "inhouse" in text and "```" not in text
