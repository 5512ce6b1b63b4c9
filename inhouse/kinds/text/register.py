"""Register what a text fine-tuning run produced: a classifier and its int8 version, or an adapter.

A full fine-tune registers the float classifier, then its int8 version (Linear layers and,
by default, embeddings) measured on the test split; ``champion`` moves to the int8 version
when it loses at most ``max_accuracy_drop`` points, else to the float one. A head-only or LoRA
run registers an adapter versioned against its base. A DP run's privacy facts go into the
lineage of every version it makes.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from inhouse import services
from inhouse.config import Settings, TextTrainOptions
from inhouse.data import DatasetInfo
from inhouse.data.text_import import TextRows
from inhouse.kinds.modules import register_module


def _accuracy(model: torch.nn.Module, tokenizer: Any, test: TextRows, max_length: int) -> float:
    from inhouse.models.text import predict_proba

    if len(test) == 0:
        return float("nan")
    probabilities = predict_proba(model, tokenizer, test.texts, max_length=max_length)
    return float((probabilities.argmax(axis=1) == np.asarray(test.labels)).mean())


def calibration_batches(
    tokenizer: Any, texts: Sequence[str], *, max_length: int, rows: int = 256, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(ids, mask)`` batches of 64 from a seeded sample of ``rows`` training texts: what the
    int8 compression calibrates its SmoothQuant factors on (see inhouse.compress.smooth)."""
    from inhouse.models.text import encode_texts

    picked = random.Random(seed).sample(list(texts), min(rows, len(texts)))
    return [
        encode_texts(tokenizer, picked[start : start + 64], max_length=max_length)
        for start in range(0, len(picked), 64)
    ]


def register_result(
    settings: Settings,
    options: TextTrainOptions,
    *,
    model: Any,
    tokenizer: Any,
    spec: dict[str, Any],
    base: Any,
    test: TextRows,
    history: dict[str, Any],
    info: DatasetInfo,
    run_name: str,
    privacy: dict[str, Any] | None = None,
    calibration_texts: Sequence[str] = (),
) -> dict[str, Any]:
    """Register the trained weights (classifier + int8, or an adapter); move the champion.

    ``calibration_texts`` (training texts) calibrate the int8 copy's activation smoothing; a
    differentially private run ignores them (statistics of raw training rows are not covered
    by its epsilon).

    ``privacy`` is the run's privacy lineage (:meth:`PrivateRun.lineage`: epsilon, delta,
    accountant, noise, clipping, sample rate, steps, ledger charge); every version made here,
    the int8 one included (post-processing), carries it.
    """
    from inhouse.compress import compress
    from inhouse.config import CompressionSettings
    from inhouse.kinds.text.versions import register_adapter
    from inhouse.models.lora import trainable_fraction

    registry = services.registry(settings)
    model.eval()
    accuracy = _accuracy(model, tokenizer, test, options.max_length)
    metrics = {
        "test_accuracy": accuracy,
        "train_accuracy": history["train_accuracy"],
        "resumed_from_epoch": history["resumed_from_epoch"],
        "trainable_fraction": trainable_fraction(model),
        "method": options.method,
    }
    source = (
        {"model": base.model, "version": base.version}
        if base is not None
        else {"model_dir": str(options.model_dir)}
    )
    lineage = {
        "dataset": options.dataset,
        "rows": {
            "up_to_id": info.last_id,
            "train_rows": info.train_rows,
            "test_rows": info.test_rows,
            "train_limit": options.train_limit,
        },
        "config": options.model_dump(),
        "run": run_name,
        "parent": None,
        "base": source,
        "code_revision": os.environ.get("INHOUSE_CODE_REVISION", "unknown"),
        "privacy": privacy or {"dp": False},
    }
    summary: dict[str, Any] = {
        "model": options.model,
        "method": options.method,
        "test_accuracy": accuracy,
        "compressed": None,
        "backend": history.get("backend"),
        "device": history.get("device"),
        "amp": history.get("amp"),
        "epochs": options.epochs,
        "privacy": lineage["privacy"],
    }
    if options.method != "full":
        version = register_adapter(
            registry,
            options.model,
            model=model,
            method=options.method,
            base=base,
            class_names=list(spec["class_names"]),
            max_length=options.max_length,
            lora=spec_lora(options),
            metrics=metrics,
            lineage=lineage,
        )
        served = version.version
    else:
        version = register_module(
            registry, options.model, module=model, spec=spec, metrics=metrics, lineage=lineage
        )
        served = version.version
        if options.compress:
            dp = bool((privacy or {}).get("dp", False))
            calibration = (
                calibration_batches(tokenizer, calibration_texts, max_length=options.max_length)
                if calibration_texts and not dp
                else None
            )
            int8 = compress(
                model,
                CompressionSettings(
                    prune_amount=0.0, quantize_embeddings=options.quantize_embeddings
                ),
                calibration=calibration,
            )
            int8_accuracy = _accuracy(int8, tokenizer, test, options.max_length)
            drop = 100.0 * (accuracy - int8_accuracy)
            passed = drop <= options.max_accuracy_drop
            small = register_module(
                registry,
                options.model,
                module=int8,
                spec=spec,
                fmt="compressed",
                metrics={
                    **metrics,
                    "test_accuracy": int8_accuracy,
                    "accuracy_drop_points": drop,
                    "gate_passed": passed,
                },
                lineage={**lineage, "parent": {"model": options.model, "version": version.version}},
            )
            summary["compressed"] = {
                "version": small.version,
                "test_accuracy": int8_accuracy,
                "accuracy_drop_points": drop,
                "gate_passed": passed,
                "size_ratio": version.size_bytes / small.size_bytes,
            }
            served = small.version if passed else version.version
    if options.promote:
        registry.set_alias(options.model, "champion", served)
    return summary | {
        "version": version.version,
        "served_version": served,
        "size_bytes": version.size_bytes,
    }


def spec_lora(options: TextTrainOptions) -> dict[str, Any] | None:
    from inhouse.models.lora import lora_config

    return (
        lora_config(r=options.lora_r, alpha=options.lora_alpha)
        if options.method == "lora"
        else None
    )
