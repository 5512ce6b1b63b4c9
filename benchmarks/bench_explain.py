"""Explanation speed: ``inhouse.explain.explain`` vs the unbatched ways of calling Captum.

On the digits MLP (1 torch thread), milliseconds per explained instance for:

- Integrated Gradients, ours (every path point of every instance in one forward/backward,
  ``internal_batch_size`` = instances x n_steps) vs Captum's IntegratedGradients called one
  instance at a time with ``internal_batch_size=1`` (one path point per pass), and vs Captum's
  own batched call on the whole batch (our wrapper's overhead: validation, checks, deltas);
- KernelSHAP: ours (the default ``explain``: vectorised over samples and instances,
  ``perturbations_per_eval=64``) vs Captum's KernelShap with its default of 1, one instance at
  a time (``backend="captum"``); and Captum's with 64 vs 1. Same seed, same 200 samples.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inhouse.benchmarks.common import digits_data, median, torch_threads, train_digits
from inhouse.benchmarks.report import row

NAME = "explain"
N_STEPS = 50


def _ms_per_instance(fn: Callable[[], Any], n_instances: int, repeats: int) -> float:
    fn()  # warm-up (allocator, Captum imports)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000.0 / n_instances)
    return median(times)


def _captum_ig_one_by_one(model: torch.nn.Module, x: torch.Tensor, targets: list[int]) -> None:
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum warns that 1 < examples; that is the point
        for i in range(x.shape[0]):
            ig.attribute(x[i : i + 1], baselines=torch.zeros_like(x[i : i + 1]),
                         target=targets[i], n_steps=N_STEPS, method="gausslegendre",
                         internal_batch_size=1)


def _captum_ig_batched(model: torch.nn.Module, x: torch.Tensor, targets: list[int]) -> None:
    from captum.attr import IntegratedGradients

    IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=targets,
                                         n_steps=N_STEPS, method="gausslegendre")


def run(quick: bool) -> list[dict[str, Any]]:
    """IG batched vs unbatched; KernelSHAP ours vs Captum's default, and 64 vs 1 per pass."""
    from inhouse.explain import explain

    n, repeats = (8, 3) if quick else (16, 5)
    with tempfile.TemporaryDirectory(prefix="inhouse-bench-explain-") as tmp:
        train, test = digits_data(Path(tmp))
    model, _spec = train_digits(train.x, train.y, epochs=10)
    x = test.x[:n].clone()
    with torch.no_grad():
        targets = [int(t) for t in model(x).argmax(dim=1)]
    with torch_threads(1):
        ig = explain(model, x, method="ig", options={"n_steps": N_STEPS})
        ig_ours = _ms_per_instance(
            lambda: explain(model, x, method="ig", options={"n_steps": N_STEPS}), n, repeats)
        ig_single = _ms_per_instance(lambda: _captum_ig_one_by_one(model, x, targets), n,
                                     max(1, repeats // 2))
        ig_captum = _ms_per_instance(lambda: _captum_ig_batched(model, x, targets), n, repeats)
        # (backend, perturbations_per_eval): ours is the default call (vectorised, 64);
        # Captum's KernelShap with its default of 1 is the baseline.
        configs = {"ours": ("inhouse", 64), "captum64": ("captum", 64), "captum1": ("captum", 1)}

        def shap(name: str) -> Any:
            backend, ppe = configs[name]
            return explain(model, x, method="shap", backend=backend,
                           options={"perturbations_per_eval": ppe})

        shap_ms = {name: _ms_per_instance(lambda name=name: shap(name), n,
                                          max(1, repeats // 2)) for name in configs}
        attributions = {name: shap(name).attributions for name in configs}
    same = np.allclose(attributions["captum64"], attributions["captum1"], atol=1e-4)
    corr = float(np.corrcoef(attributions["ours"].ravel(), attributions["captum1"].ravel())[0, 1])
    ibs = ig.metadata["internal_batch_size"]
    return [
        row(NAME, "IG ms/instance, batched vs internal_batch_size=1", ig_ours, ig_single,
            target=("ratio", "<=", 1.0, ""),
            notes=f"{n} instances, {N_STEPS} steps; ours internal_batch_size={ibs}, "
                  f"baseline: Captum one instance at a time, 1 path point per pass"),
        row(NAME, "IG ms/instance, ours vs Captum batched call", ig_ours, ig_captum,
            notes=f"wrapper overhead (validation, deltas); max |completeness delta| "
                  f"{float(np.abs(ig.delta).max()):.2e}"),
        row(NAME, "KernelSHAP ms/instance, ours vs Captum default", shap_ms["ours"],
            shap_ms["captum1"], target=("ratio", "<=", 1.0, ""),
            notes=f"{n} instances x 200 samples, seed 0; ours: vectorised, "
                  "perturbations_per_eval=64; Captum KernelShap one instance at a time, "
                  f"perturbations_per_eval=1; attribution correlation {corr:.3f}"),
        row(NAME, "KernelSHAP ms/instance, Captum perturbations_per_eval 64 vs 1",
            shap_ms["captum64"], shap_ms["captum1"],
            notes=f"explain(backend='captum'); same attributions: {same}"),
    ]
