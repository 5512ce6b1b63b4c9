"""Compress an LLM version (``COMPRESSING``): an int8 copy for CPU serving, gated on perplexity.

The float parent is loaded, quantized (:mod:`inhouse.kinds.llm.quantize`: every Linear and the
embedding to int8), and both are measured on the held-out text this package ships
(:mod:`inhouse.kinds.llm.measure`): stored size, greedy decode tokens/s, held-out perplexity.
The copy is registered as an ``int8`` version whose lineage names its parent; ``champion``
moves to it when the gate passes (perplexity at most ``max_perplexity_increase`` above the
parent's, plus the optional size and latency limits) and ``promote`` is set. A failed gate still
registers the version, its metrics saying why, and leaves the parent serving.

Quantization reads no training row: it is post-processing, so the copy keeps the parent's
privacy claim (a differentially private parent stays DP). Pruning does not apply to this kind;
the pruning settings are ignored and the report says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inhouse.compress.admission import parent_privacy
from inhouse.config import CompressionSettings, GateSettings
from inhouse.errors import InvalidInputError, ModelNotFoundError
from inhouse.registry import COMPRESSED_FORMAT, ModelVersion, Registry

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

CHAMPION = "champion"
HELDOUT_MAX_TOKENS = 4096
WINDOW = 512
DECODE_TOKENS = 32
DECODE_PROMPT = "Explain in one sentence what a private model registry is for."


def _parent(registry: Registry, model: str, ref: str) -> ModelVersion:
    from inhouse.kinds.llm import LLM_ARCH

    try:
        info = registry.get(model, ref)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(f"cannot compress: {exc.message}") from None
    if info.spec.get("kind") != LLM_ARCH:
        raise InvalidInputError(f"{model} v{info.version} is not a generative LLM")
    if info.spec.get("role") != "base" or info.format == COMPRESSED_FORMAT:
        parent = (info.lineage.get("parent") or {}).get("version", "?")
        raise InvalidInputError(
            f"{model} v{info.version} is already int8 (from v{parent}); "
            "compress its float parent instead"
        )
    return info


def _verdict(*, passed: bool, reasons: list[str], promote: bool, promoted: bool,
             parent_is_champion: bool, parent: int, new: int) -> str:  # fmt: skip
    if promoted:
        return f"gate passed: v{new} is now the champion (was v{parent})"
    if not passed:
        stays = f"v{parent} stays champion" if parent_is_champion else "champion unchanged"
        return f"gate failed ({'; '.join(reasons)}): {stays}"
    if not promote:
        return "gate passed; promotion not requested: champion unchanged"
    return f"gate passed; v{parent} is not the champion, so the alias is unchanged"


class LLMCompressing:
    """The llm kind's :class:`~inhouse.kinds.compressing.CompressingKind`."""

    def compress(
        self,
        *,
        registry: Registry,
        engine: Engine | None = None,
        model: str,
        ref: str = CHAMPION,
        settings: CompressionSettings,
        gate: GateSettings,
        promote: bool = True,
    ) -> dict[str, Any]:
        """int8-quantize ``model`` at ``ref``, measure it, register it, maybe promote it.

        ``engine`` is not used: the held-out text ships with inhouse, no data set is read.

        Raises:
            ModelNotFoundError: unknown model or version.
            InvalidInputError: not an LLM, already int8, or ``quantize`` is ``none``.
        """
        from inhouse.kinds.llm import measure
        from inhouse.kinds.llm.loaded import load_llm
        from inhouse.kinds.llm.quantize import int8_spec, quantize_module
        from inhouse.kinds.modules import artifact_bytes
        from inhouse.registry.artifacts import encode

        if settings.quantize != "int8":
            raise InvalidInputError(
                "the llm kind compresses by int8 quantization only; --quantize none leaves "
                "nothing to do"
            )
        info = _parent(registry, model, ref)
        parent = load_llm(registry, info, device="cpu")
        int8, quantization = quantize_module(
            parent.module,
            runtime=settings.runtime,
            dynamic_min_weights=settings.dynamic_min_weights,
        )
        plain = artifact_bytes(int8, fmt=COMPRESSED_FORMAT)
        stored = encode(
            plain, fmt=COMPRESSED_FORMAT, model=model, version=info.version,
            keyring=registry.keyring,
        )  # fmt: skip
        window = min(WINDOW, parent.context_length)
        ids = parent.tokenizer(measure.heldout_text(), add_special_tokens=False)["input_ids"]
        ids = [int(i) for i in ids[:HELDOUT_MAX_TOKENS]]
        prompt = parent.prompt_ids(DECODE_PROMPT)

        def stats(module: Any, size: int) -> measure.LLMStats:
            return measure.measure(
                module, size_bytes=size, ids=ids, window=window, prompt=prompt,
                new_tokens=DECODE_TOKENS,
            )  # fmt: skip

        result = measure.report(
            stats(parent.module, info.size_bytes),
            stats(int8, len(stored.data)),
            heldout_tokens=len(ids),
            window=window,
        )
        passed, reasons = measure.gate(result, gate)
        ignored = (
            f"pruning does not apply to LLMs: prune_amount={settings.prune_amount} ignored"
            if settings.prune_amount > 0
            else None
        )
        metrics: dict[str, Any] = {
            "perplexity": result.compressed.perplexity,
            "parent_perplexity": result.parent.perplexity,
            "perplexity_increase": result.perplexity_increase,
            "size_bytes": result.compressed.size_bytes,
            "parent_size_bytes": result.parent.size_bytes,
            "size_ratio": result.size_ratio,
            "plaintext_size_bytes": len(plain),
            "decode_tokens_per_s": result.compressed.decode_tokens_per_s,
            "parent_decode_tokens_per_s": result.parent.decode_tokens_per_s,
            "speedup": result.speedup,
            "parameters": info.spec.get("parameters"),
            "gate_passed": passed,
            "gate_reasons": reasons,
            "compression_report": result.model_dump(),
        }
        lineage = {
            **registry.full_lineage(info),
            "parent": {"model": model, "version": info.version},
            "compression": {"quantization": quantization, "ignored": ignored},
            "gate": {
                "passed": passed,
                "reasons": reasons,
                "settings": gate.model_dump(mode="json"),
            },
            "heldout": {"tokens": len(ids), "licence": measure.HELDOUT_LICENCE},
            "privacy": parent_privacy(info.lineage),  # post-processing keeps the parent's claim
        }
        new = registry.register(
            model,
            artifact=plain,
            spec=int8_spec(info.spec, quantization),
            metrics=metrics,
            lineage=lineage,
            fmt=COMPRESSED_FORMAT,
        )
        parent_is_champion = registry.aliases(model).get(CHAMPION) == info.version
        promoted = passed and promote and parent_is_champion
        if promoted:
            registry.set_alias(model, CHAMPION, new.version)
        verdict = _verdict(
            passed=passed, reasons=reasons, promote=promote, promoted=promoted,
            parent_is_champion=parent_is_champion, parent=info.version, new=new.version,
        )  # fmt: skip
        lines = [
            f"### {model}: v{info.version} (float32) -> v{new.version} (int8)",
            "",
            result.to_markdown().rstrip("\n"),
            *([f"- {ignored}"] if ignored else []),
            f"- {verdict}",
        ]
        return {
            "model": model,
            "parent_version": info.version,
            "version": new.version,
            "format": new.format,
            "encrypted": new.encrypted,
            "gate": {"passed": passed, "reasons": reasons},
            "promoted": promoted,
            "champion": registry.aliases(model).get(CHAMPION),
            "message": verdict,
            "size_bytes": new.size_bytes,
            "parent_size_bytes": info.size_bytes,
            "size_ratio": info.size_bytes / new.size_bytes,
            "perplexity": {
                "parent": result.parent.perplexity,
                "compressed": result.compressed.perplexity,
            },
            "perplexity_increase": result.perplexity_increase,
            "decode_tokens_per_s": {
                "parent": result.parent.decode_tokens_per_s,
                "compressed": result.compressed.decode_tokens_per_s,
            },
            "report": metrics["compression_report"],
            "report_markdown": "\n".join(lines) + "\n",
        }


COMPRESSING = LLMCompressing()
