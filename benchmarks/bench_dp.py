"""Differential privacy: what DP-SGD costs in time and accuracy, on the real digits data.

- Time: one epoch of the platform's training step (``train_one_epoch``) on the same MLP,
  data and batch size, with Opacus DP-SGD (``inhouse.training.dp.make_private``: per-sample
  gradients, clipping, noise, Poisson sampling, accounting) vs without. Target <= 1.6x.
- Accuracy: test accuracy at epsilon 1, 3, 8 (delta 1e-5, PRV accountant) vs the same model
  trained without DP; target: within 2 points at epsilon 3. Mean of 5 seeds (the digits
  test split has 360 rows: one row is 0.28 points). A PNG plots accuracy against epsilon.

Both run in-process through the same functions the Ray Train workers call, so the ratios
measure Opacus, not Ray.
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from inhouse.benchmarks.report import row
from inhouse.kinds import build_model
from inhouse.models import MLPSpec
from inhouse.training import evaluate, train_one_epoch
from inhouse.training.dp import DPPlan, make_private, plan_dp

NAME = "dp"
PLOT = Path(__file__).parent / "results" / "dp_accuracy.png"
DELTA = 1e-5
MIN_TIMED_STEPS = 100  # steps per timed repeat, so the time ratio is stable
# The best of a ~20-point grid on 1,437 rows: a linear model (fewest parameters to noise; the
# default [64, 64] MLP loses ~20 points at epsilon 3), Poisson batches of half the rows
# (q = 0.5), 200 steps, Adam lr 0.03, clipping 0.3. Full batches, more or fewer steps, other
# clipping norms and parameter averaging all did the same or worse (93.0-94.3%).
# Also tried (issue #4, 3 seeds each, eps 3, same mechanism and PRV accounting; none beat this
# recipe or shrank the gap): features in [0, 1] instead of [-1, 1]; per-row unit-norm pixels;
# fixed seeded random ReLU (256/1024) and random Fourier (512/2048) features (non-DP rises to
# 97.7-97.9%, DP stays 91-94%: the gap grows); low-frequency 2-D DCT coefficients (25-36, fewer
# parameters to noise: DP 92-93%, non-DP 94.9-95.8%); augmentation multiplicity with 1-pixel
# shifts, K=5/9 (74-88%: shifts destroy 8x8 digits for a linear model, non-DP with shifts 89.7%);
# fixed Sobel edge features, +/- parts, with/without 2x2 pooling (144/576; non-DP 97.1-98.0%,
# DP 91.7-94.6%), also with augmentation multiplicity (89.5-92.3%); SGD+momentum, linear LR
# decay, EMA 0.9/0.97, zero init, weight decay, Adam betas, batches 180-1437.
# The limit is the noise itself: the same runs with noise multiplier 2 instead of ~10 reach 95.6%.
# Public synthetic digits (matplotlib's fonts and drawn pen strokes, 32x32 -> 4x4 block counts
# like NIST's; no private row read) reach only 55-61% zero-shot. Pretraining on them, then DP
# fine-tuning, gives 94.2% (non-DP from the same init 96.9%); centring by their mean 94.6% vs
# 96.8%; a fixed 40-component PCA of them 94.1% vs 96.1% (Opacus, eps 3, 5 seeds: gap 2.0-2.7).
# Starting from the non-DP model itself, DP fine-tuning (lr 0.003, 3-10 epochs) keeps ~96.7%:
# public data would have to be that good.
# Round 2 (5 seeds, same mechanism; this recipe: DP 94.33% vs 96.78%, gap 2.45): per-sample
# gradient normalisation (clip 0.01 / 0.001, Bu et al.) 94.0 / 93.9; DP-AdamBC (Adam's second
# moment minus the noise variance, Tang et al.) 74%; tail averaging of the last 20/50% of steps
# 94.2 / 94.3, with linear LR decay 93.7, cosine LR 94.0; free post-processing of the weights:
# Gaussian smoothing of each class's 8x8 map (sigma 0.5: DP 93.1, non-DP 95.9) or projection on
# the 6x6 lowest DCT frequencies (91.9); losses: squared multi-class hinge 90.3, MSE on one-hot
# 70.5, label smoothing 0.1 92.1, logit temperature 2 / 0.5 93.8 / 93.6; sqrt pixels 94.1 vs
# 96.1 (the gap shrinks only because non-DP drops). Centring the pixels by a private mean (one
# Gaussian release of the row sum, rows clipped to L2 5 in [0,1] units, noise multiplier 5,
# composed with DP-SGD in the PRV accountant: DP-SGD noise 9.96 -> 10.34 for the same eps 3)
# gives 94.61% vs 96.78% (gap 2.17; the exact mean, for reference, 94.67%); noise multiplier
# 10 / 20 for the mean (DP-SGD 10.03 / 9.97) 94.72 / 94.72 (gap 2.06); seeds 5-9: this recipe
# 94.11 vs 97.00, centred (multiplier 10) 94.78 (non-DP centred 96.78, uncentred 97.00). The only
# consistent gain (+0.4-0.7), not yet the 2 points; not in the recipe (needs plan_dp to compose
# the mean release). On top of it lr 0.02 / 0.05 94.6 / 94.2; a nearest-centroid start from
# private class means 94.6 (90.2 at logit scale 4).
DP_RECIPE = {"hidden": [], "batch": 720, "epochs": 100, "lr": 0.03, "clip": 0.3}


def _digits() -> tuple[TensorDataset, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32)
    y = torch.tensor(bunch.target)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return TensorDataset(x_tr, y_tr), x_tr, y_tr, x_te, y_te


def _model(hidden: list[int], seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(MLPSpec(input_dim=64, hidden=hidden, num_classes=10).model_dump())
    model[0].set_bounds(torch.zeros(64), torch.full((64,), 16.0))  # type: ignore[operator]
    return model


def _plan(epsilon: float, recipe: dict[str, Any]) -> DPPlan:
    return plan_dp(
        train_rows=len(_digits()[0]),
        batch_size=recipe["batch"],
        epochs=recipe["epochs"],
        max_grad_norm=recipe["clip"],
        delta=DELTA,
        accountant="prv",
        target_epsilon=epsilon,
    )


def _train(plan: DPPlan | None, seed: int, *, recipe: dict[str, Any]) -> float:
    """Test accuracy after DP training with ``plan``, or plain training without one."""
    data, *_, x_te, y_te = _digits()
    model = _model(recipe["hidden"], seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe["lr"] if plan else 0.01)
    if plan is None:
        loader = DataLoader(data, batch_size=64, shuffle=True)
        for _ in range(40):
            train_one_epoch(model, loader, optimizer)
        return evaluate(model, x_te, y_te).accuracy
    private = make_private(
        model=model, optimizer=optimizer, dataset=data, plan=plan, distributed=False
    )
    for _ in range(plan.epochs):
        train_one_epoch(private.model, private.loader, private.optimizer)
    return evaluate(model, x_te, y_te).accuracy


def _epoch_step(dp: bool, *, hidden: list[int], batch: int) -> tuple[Any, Any, Any]:
    """``(model, loader, optimizer)`` for one epoch of ``hidden``, with or without DP."""
    data, *_ = _digits()
    model = _model(hidden, 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    if not dp:
        return model, DataLoader(data, batch_size=batch, shuffle=True), optimizer
    plan = plan_dp(
        train_rows=len(data), batch_size=batch, epochs=1, max_grad_norm=1.0,
        delta=DELTA, accountant="prv", noise_multiplier=1.0,
    )  # fmt: skip
    private = make_private(
        model=model, optimizer=optimizer, dataset=data, plan=plan, distributed=False
    )
    return private.model, private.loader, private.optimizer


def _epoch_seconds(repeats: int, *, hidden: list[int], batch: int) -> tuple[float, float]:
    """Seconds of one epoch with DP and without, of ``hidden`` at (expected) ``batch``.

    Each repeat times enough whole epochs for ``MIN_TIMED_STEPS`` steps (an epoch of the DP
    recipe is only 2 steps); DP and non-DP repeats alternate, so both see the same load, and
    the fastest repeat of each counts: the one least disturbed by other processes.
    """
    steps = {dp: _epoch_step(dp, hidden=hidden, batch=batch) for dp in (True, False)}
    epochs = math.ceil(MIN_TIMED_STEPS / math.ceil(len(_digits()[0]) / batch))
    times: dict[bool, list[float]] = {True: [], False: []}
    for step in steps.values():
        train_one_epoch(*step)  # warm-up
    for _ in range(repeats):
        for dp, step in steps.items():
            started = time.perf_counter()
            for _ in range(epochs):
                train_one_epoch(*step)
            times[dp].append((time.perf_counter() - started) / epochs)
    return min(times[True]), min(times[False])


def _plot(curve: dict[float, float], baseline: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    eps = sorted(curve)
    ax.plot(eps, [100 * curve[e] for e in eps], "o-", label="DP-SGD (δ=1e-5, PRV)")
    ax.axhline(100 * baseline, color="grey", ls="--", label="same model, no DP")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(eps, [f"{e:g}" for e in eps])
    ax.set_xlabel("epsilon")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("digits: accuracy vs privacy")
    ax.legend(loc="lower right")
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=120)
    plt.close(fig)


def run(quick: bool) -> list[dict[str, Any]]:
    warnings.filterwarnings("ignore", module="opacus")
    torch.set_num_threads(1)
    repeats = 3 if quick else 7
    recipe = {"hidden": DP_RECIPE["hidden"], "batch": DP_RECIPE["batch"]}
    default = {"hidden": [64, 64], "batch": 64}
    times = {
        name: _epoch_seconds(repeats, **cfg)  # type: ignore[arg-type]
        for name, cfg in (("recipe", recipe), ("default", default))
    }
    seeds = range(5)
    baseline = statistics.mean(_train(None, s, recipe=DP_RECIPE) for s in seeds)
    plans = {eps: _plan(eps, DP_RECIPE) for eps in (1.0, 3.0, 8.0)}
    curve = {
        eps: statistics.mean(_train(plan, s, recipe=DP_RECIPE) for s in seeds)
        for eps, plan in plans.items()
    }
    _plot(curve, baseline)
    rows = [
        row(
            NAME,
            "epoch time, DP vs non-DP (s)",
            *times["recipe"],
            target=("ratio", "<=", 1.6, ""),
            notes=f"the DP model below (linear, batch {DP_RECIPE['batch']}), 1 thread",
        ),
        row(
            NAME,
            "epoch time, DP vs non-DP (s), MLP [64,64] b64",
            *times["default"],
            notes="per-step Opacus overhead dominates tiny steps",
        ),
    ]
    for eps, accuracy in curve.items():
        rows.append(
            row(
                NAME,
                f"test accuracy (pts) at ε={eps:g} vs non-DP",
                100 * accuracy,
                100 * baseline,
                target=("delta", ">=", -2.0, "pts") if eps == 3.0 else None,
                notes=f"linear model, mean of {len(seeds)} seeds; plot {PLOT.name}",
            )
        )
    return rows
