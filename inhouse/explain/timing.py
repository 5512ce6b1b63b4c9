"""Micro-benchmark: our vectorised KernelSHAP and LIME against Captum's default calls.

``compare_backends`` times ``explain(method="shap" | "lime")`` with ``backend="inhouse"`` (the
batch at once, ``perturbations_per_eval`` rows per forward pass) and with ``backend="captum"``
at Captum's default of one perturbation per forward pass, at the same sample count and seed,
and says how far the two backends agree. ``benchmarks/bench_explain.py`` reports it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from inhouse.errors import InvalidInputError
from inhouse.explain.attribution import explain
from inhouse.explain.importance import rank_correlation
from inhouse.explain.types import ExplainLimits, Explanation

METHODS = ("shap", "lime")


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads (``None``: leave them alone)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _median_ms(fn: Callable[[], Explanation], repeats: int) -> tuple[float, Explanation]:
    result = fn()  # warm-up: allocator, lazy imports
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times), result


def _agreement(ours: Explanation, theirs: Explanation) -> float:
    """Mean over instances of the Spearman correlation of the two attribution vectors."""
    rows = zip(ours.attributions, theirs.attributions, strict=True)
    return float(np.mean([rank_correlation(a, b) for a, b in rows]))


def compare_backends(
    model: nn.Module,
    x: Any,
    *,
    n_samples: int = 200,
    repeats: int = 3,
    perturbations_per_eval: int = 64,
    seed: int = 0,
    threads: int | None = 1,
    methods: tuple[str, ...] = METHODS,
) -> dict[str, Any]:
    """Milliseconds per instance, ours vs Captum's default, for KernelSHAP and LIME.

    Args:
        model: module returning logits (e.g. the digits MLP).
        x: the instances to explain (rows, features).
        n_samples: samples per instance, the same for both backends.
        repeats: timed calls per measurement (after one warm-up); the median is kept.
        perturbations_per_eval: rows per forward pass on our side (Captum's side uses 1).
        seed: sampling seed for both.
        threads: torch intra-op threads during the timing (``None``: as set by the caller).
        methods: a subset of ``("shap", "lime")``.

    Returns:
        ``{"n_instances", "n_features", "n_samples", "repeats", "threads",
        "perturbations_per_eval": {"inhouse", "captum"}, "shap": {...}, "lime": {...}}`` where
        each method has ``inhouse_ms_per_instance``, ``captum_ms_per_instance``, ``speedup``
        (Captum / ours), ``ratio`` (ours / Captum), ``rank_correlation`` (mean Spearman of the
        two backends' attributions) and each backend's largest |additivity gap|.
    """
    if repeats < 1:
        raise InvalidInputError(f"repeats must be >= 1, got {repeats}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InvalidInputError(f"unknown method(s) {unknown}; use 'shap' and/or 'lime'")
    batch = torch.as_tensor(np.asarray(x, dtype=np.float32))
    batch = batch.unsqueeze(0) if batch.dim() == 1 else batch
    n_rows = int(batch.shape[0])
    limits = ExplainLimits(
        max_instances=max(n_rows, 1),
        max_n_samples=max(n_samples, 2),
        max_model_rows=max(n_rows * n_samples, 1),
        max_perturbations_per_eval=max(perturbations_per_eval, 1),
    )
    settings = {"inhouse": perturbations_per_eval, "captum": 1}
    report: dict[str, Any] = {
        "n_instances": n_rows,
        "n_features": int(batch[0].numel()),
        "n_samples": n_samples,
        "repeats": repeats,
        "threads": threads if threads is not None else torch.get_num_threads(),
        "perturbations_per_eval": dict(settings),
    }
    with torch_threads(threads):
        for method in methods:
            timed: dict[str, tuple[float, Explanation]] = {}
            for backend, ppe in settings.items():
                options = {"n_samples": n_samples, "perturbations_per_eval": ppe, "seed": seed}

                def call(backend: str = backend, options: dict[str, Any] = options) -> Explanation:
                    return explain(
                        model,
                        batch,
                        method=method,
                        options=options,
                        limits=limits,
                        backend=backend,
                    )

                timed[backend] = _median_ms(call, repeats)
            ours_ms, ours = timed["inhouse"]
            captum_ms, theirs = timed["captum"]
            report[method] = {
                "inhouse_ms_per_instance": round(ours_ms / n_rows, 3),
                "captum_ms_per_instance": round(captum_ms / n_rows, 3),
                "speedup": round(captum_ms / ours_ms, 2) if ours_ms > 0 else float("inf"),
                "ratio": round(ours_ms / captum_ms, 4) if captum_ms > 0 else float("inf"),
                "rank_correlation": round(_agreement(ours, theirs), 4),
                "inhouse_max_abs_delta": float(np.abs(ours.delta).max()),
                "captum_max_abs_delta": float(np.abs(theirs.delta).max()),
            }
    return report
