"""Compress a registered version into a new version of the same model, gated against its parent.

:func:`compress_version` is the whole flow, without Ray (``jobs/compress.py`` runs it as a Ray
task): load the parent, read its data set rows, prune + quantize, measure the result against the
parent on the test split (stored bytes, accuracy, latency, explanation fidelity), apply the gate,
register a ``compressed`` version whose lineage points at the parent, and move ``champion`` to it
when the gate passes. A failed gate still registers the version (its metrics say why) but leaves
the parent serving.

Training rows are read only by a fine-tune the privacy ledger admitted first (see
:mod:`inhouse.compress.admission`); the lineage claims only the privacy that was paid for.
"""

from __future__ import annotations

from typing import Any

import torch
from sqlalchemy import Engine

from inhouse.compress.admission import (
    admit_compression,
    compression_run_name,
    finetunes_on_rows,
)
from inhouse.compress.artifact import dumps_compressed, float32_size, load_compressed
from inhouse.compress.pipeline import compress
from inhouse.compress.report import CompressionReport, compare
from inhouse.compress.report import gate as apply_gate
from inhouse.config import CompressionSettings, GateSettings
from inhouse.data import read_rows
from inhouse.errors import InvalidInputError, ModelNotFoundError
from inhouse.kinds.modules import build_model, load_module, register_module
from inhouse.kinds.tabular.fidelity import explanation_fidelity, probe_rows
from inhouse.registry import COMPRESSED_FORMAT, ModelVersion, Registry
from inhouse.registry.artifacts import encode

CHAMPION = "champion"


def tabular_settings(settings: CompressionSettings) -> CompressionSettings:
    """``settings`` with runtime ``auto`` resolved to ``weight_only`` (int8 weights, float
    activations) for a tabular model.

    Its first Linear sees standardised raw features, whose outliers (a pixel that is almost
    always 0 lies hundreds of standard deviations out) leave the dynamic kernel's one int8
    scale per batch a handful of levels for every other feature: measured on the MNIST seed
    MLP, int8 with the dynamic 784x64 layer lost 3.2 points, weight-only none, and the dynamic
    kernel was not faster at that size (0.062 vs 0.030 ms at batch 1). ``dynamic`` asked for
    explicitly is kept.
    """
    if settings.runtime != "auto":
        return settings
    return settings.model_copy(update={"runtime": "weight_only"})


def _parent(registry: Registry, model: str, ref: str) -> ModelVersion:
    try:
        info = registry.get(model, ref)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(f"cannot compress: {exc.message}") from None
    if info.format == COMPRESSED_FORMAT:
        parent = info.lineage.get("parent") or {}
        raise InvalidInputError(
            f"{model} v{info.version} is already compressed (from v{parent.get('version', '?')}); "
            "compress its float parent instead"
        )
    return info


def _data_source(info: ModelVersion) -> tuple[str, int | None]:
    dataset = info.lineage.get("dataset")
    if not isinstance(dataset, str) or not dataset:
        raise InvalidInputError(
            f"{info.model} v{info.version} has no data set in its lineage; "
            "cannot fine-tune or evaluate a compressed copy"
        )
    rows = info.lineage.get("rows") or {}
    up_to_id = rows.get("up_to_id") if isinstance(rows, dict) else None
    return dataset, int(up_to_id) if up_to_id is not None else None


def _markdown(
    *,
    model: str,
    parent_version: int,
    version: int,
    report: CompressionReport,
    fidelity: float,
    probe: int,
    verdict: str,
) -> str:
    lines = [
        f"### {model}: v{parent_version} (float) -> v{version} (compressed)",
        "",
        report.to_markdown().rstrip("\n"),
        "",
        f"- test samples: {report.test_samples}",
        f"- explanation fidelity (Spearman of Integrated Gradients attributions, mean over "
        f"{probe} test rows): {fidelity:.3f}",
        f"- {verdict}",
    ]
    return "\n".join(lines) + "\n"


def compress_version(
    *,
    registry: Registry,
    engine: Engine,
    model: str,
    ref: str = CHAMPION,
    settings: CompressionSettings,
    gate: GateSettings,
    promote: bool = True,
) -> dict[str, Any]:
    """Compress version ``ref`` of ``model`` and register the result as a new version.

    Args:
        registry: where the parent is and the compressed version goes.
        engine: the database holding the parent's data set (``lineage["dataset"]``).
        model: registry name.
        ref: version number, alias or ``latest`` of the float parent.
        settings: pruning, fine-tuning and quantization. A fine-tune (pruning with
            ``finetune_epochs > 0``) reads the training rows and needs the ledger's admission.
        gate: limits the compressed model must meet to replace the parent as champion.
        promote: move ``champion`` to the compressed version when the gate passes and the parent
            is the champion.

    Returns:
        The JSON-ready summary: versions, measured figures, gate result, whether the champion
        moved, the full report and ``report_markdown``.

    Raises:
        ModelNotFoundError: unknown model or version.
        InvalidInputError: the parent is already compressed or its data set rows are missing;
            a fine-tune of a differentially private parent.
        PermissionDeniedError: a fine-tune on a budgeted data set without an admin's
            exemption for non-DP training (see ``inhouse privacy allow-non-dp``).
    """
    info = _parent(registry, model, ref)
    settings = tabular_settings(settings)
    dataset, up_to_id = _data_source(info)
    run = compression_run_name(model, info.version)
    privacy = admit_compression(
        engine=engine,
        model=model,
        version=info.version,
        lineage=info.lineage,
        dataset=dataset,
        settings=settings,
        run=run,
    )
    parent = load_module(registry, info)
    test = read_rows(engine, dataset, split="test", up_to_id=up_to_id)
    rows: tuple[torch.Tensor, torch.Tensor] | None = None
    if finetunes_on_rows(settings):  # admitted above, before a training row is read
        train = read_rows(engine, dataset, split="train", up_to_id=up_to_id)
        if len(train) == 0:
            raise InvalidInputError(
                f"data set {dataset!r} has no train rows up to id {up_to_id} to fine-tune on"
            )
        rows = (train.x, train.y)
    if len(test) == 0:
        raise InvalidInputError(
            f"data set {dataset!r} has no test rows up to id {up_to_id}; compression is "
            "measured on them"
        )

    compressed = compress(parent, settings, train=rows)
    plain = dumps_compressed(compressed)
    # Measure what serving will load (the module rebuilt from the artifact bytes), and its size
    # as the registry stores it (encrypted when it has a key ring; the length does not depend on
    # the version number), so the ratio compares stored bytes with stored bytes.
    served = load_compressed(plain, build=lambda: build_model(info.spec))
    stored = encode(
        plain,
        fmt=COMPRESSED_FORMAT,
        model=model,
        version=info.version,
        keyring=registry.keyring,
    )
    report = compare(
        parent,
        served,
        test.x,
        test.y,
        parent_size_bytes=info.size_bytes,
        compressed_size_bytes=len(stored.data),
    )
    # The fbgemm int8 kernel has no gradient: attribute through the same int8 weights dequantized.
    differentiable = load_compressed(
        plain, build=lambda: build_model(info.spec), runtime="weight_only"
    )
    probe = probe_rows(test.x)
    fidelity, per_row = explanation_fidelity(parent, differentiable, probe)
    passed, reasons = apply_gate(report, gate)

    metrics: dict[str, Any] = {
        "test_accuracy": report.compressed.accuracy / 100.0,
        "parent_test_accuracy": report.parent.accuracy / 100.0,
        "accuracy_drop_points": report.accuracy_drop_points,
        "size_bytes": report.compressed.size_bytes,
        "parent_size_bytes": report.parent.size_bytes,
        "size_ratio": report.size_ratio,
        "plaintext_size_bytes": len(plain),
        "plaintext_size_ratio": float32_size(parent) / len(plain),
        "parameters": report.compressed.parameters,
        "nonzero_parameters": report.compressed.nonzero_parameters,
        "fidelity": fidelity,
        "fidelity_min": min(per_row),
        "fidelity_probe_rows": int(probe.shape[0]),
        "latency_ms": report.compressed.latency_ms,
        "parent_latency_ms": report.parent.latency_ms,
        "gate_passed": passed,
        "gate_reasons": reasons,
        "compression_report": {**report.to_dict(), "fidelity": fidelity},
    }
    lineage = {
        **registry.full_lineage(info),  # the parent's statistics of rows stay in the file only
        "parent": {"model": model, "version": info.version},
        "compression": settings.model_dump(mode="json"),
        "gate": {"passed": passed, "reasons": reasons, "settings": gate.model_dump(mode="json")},
        "privacy": privacy,  # never the parent's DP claim after a fine-tune without noise
    }
    new = register_module(
        registry,
        model,
        module=compressed,
        spec=info.spec,
        metrics=metrics,
        lineage=lineage,
        fmt=COMPRESSED_FORMAT,
    )

    parent_is_champion = registry.aliases(model).get(CHAMPION) == info.version
    promoted = passed and promote and parent_is_champion
    if promoted:
        registry.set_alias(model, CHAMPION, new.version)
        verdict = f"gate passed: v{new.version} is now the champion (was v{info.version})"
    elif not passed:
        verdict = f"gate failed ({'; '.join(reasons)}): " + (
            f"v{info.version} stays champion" if parent_is_champion else "champion unchanged"
        )
    elif not promote:
        verdict = "gate passed; promotion not requested: champion unchanged"
    else:
        verdict = f"gate passed; v{info.version} is not the champion, so the alias is unchanged"

    champion = registry.aliases(model).get(CHAMPION)
    return {
        "model": model,
        "parent_version": info.version,
        "version": new.version,
        "format": new.format,
        "encrypted": new.encrypted,
        "dataset": dataset,
        "gate": {"passed": passed, "reasons": reasons},
        "promoted": promoted,
        "champion": champion,
        "message": verdict,
        "test_accuracy": metrics["test_accuracy"],
        "parent_test_accuracy": metrics["parent_test_accuracy"],
        "accuracy_drop_points": report.accuracy_drop_points,
        "size_bytes": new.size_bytes,
        "parent_size_bytes": info.size_bytes,
        "size_ratio": info.size_bytes / new.size_bytes,
        "plaintext_size_ratio": metrics["plaintext_size_ratio"],
        "fidelity": fidelity,
        "latency_ms": {
            "parent": report.parent.latency_ms,
            "compressed": report.compressed.latency_ms,
        },
        "report": metrics["compression_report"],
        "report_markdown": _markdown(
            model=model,
            parent_version=info.version,
            version=new.version,
            report=report,
            fidelity=fidelity,
            probe=int(probe.shape[0]),
            verdict=verdict,
        ),
    }
