"""KernelSHAP, vectorised: every coalition drawn at once and every instance solved together.

The mathematics are Captum's ``KernelShap`` (and the ``shap`` package's): coalition sizes ``k``
drawn with probability proportional to the Shapley kernel, ``(M - 1) / (k (M - k))``, then a
uniformly random subset of that size, so that every drawn coalition has weight 1; a linear model
fitted by weighted least squares to ``f(coalition) - f(baseline)``. Where Captum gives the empty
and full coalitions a weight of 10^6, they are exact constraints here: the intercept is
``f(baseline)`` and the attributions sum to ``f(x) - f(baseline)`` (the additivity gap is zero up
to rounding). As in the ``shap`` package, a feature equal to its baseline is a dummy player
held at 0 (its Shapley value), which takes noise off the others. When the sample budget covers
every coalition, all of them are used with their exact kernel weights, which gives the exact
Shapley values.

What is vectorised: the coalitions are sampled in a few tensor operations (not one Python step
per sample), perturbed rows are built ``perturbations_per_eval`` at a time by one ``where``, and
one least-squares factorisation serves every instance, since they share their coalitions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from inhouse.explain._coalitions import coalition_values, subsets_of_sizes, unique_with_counts
from inhouse.explain._inputs import ForwardFn
from inhouse.explain.patches import group_varying, spread

_MAX_ELEMENTS = 1 << 24  # float64 elements of one batched design (128 MiB)
SOLVER = "least squares; intercept f(baseline) and sum f(x) - f(baseline) as exact constraints"


def shapley_coalitions(
    n_features: int, budget: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Coalitions other than the empty and full ones, with their regression weights.

    Args:
        n_features: features ``M``.
        budget: coalitions that may be evaluated (the sample count less the two end points).
        generator: the random source.

    Returns:
        ``(masks, weights, kind)``: (coalitions, M) booleans, float64 weights, and
        ``"exhaustive"`` (all ``2^M - 2``, Shapley kernel weights) or ``"sampled"`` (drawn from
        the kernel, weighted by how often each was drawn).
    """
    empty = torch.zeros(0, n_features, dtype=torch.bool)
    if n_features < 2 or budget < 1:
        return empty, torch.zeros(0, dtype=torch.float64), "none"
    if n_features < 31 and 2**n_features - 2 <= budget:
        codes = torch.arange(1, 2**n_features - 1, dtype=torch.long)
        masks = (codes.unsqueeze(1) >> torch.arange(n_features)) & 1 == 1
        weights = torch.tensor(
            [
                (n_features - 1) / (math.comb(n_features, k) * k * (n_features - k))
                for k in masks.sum(dim=1).tolist()
            ],
            dtype=torch.float64,
        )
        return masks, weights, "exhaustive"
    sizes = torch.arange(1, n_features, dtype=torch.long)
    probs = 1.0 / (sizes * (n_features - sizes)).double()
    drawn = sizes[torch.multinomial(probs, budget, replacement=True, generator=generator)]
    masks, counts = unique_with_counts(subsets_of_sizes(drawn, n_features, generator))
    return masks, counts, "sampled"


def constrained_fit(
    masks: torch.Tensor,
    weights: torch.Tensor,
    gains: torch.Tensor,
    totals: torch.Tensor,
    varying: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per instance ``n``, the ``phi`` minimising ``sum_c w_c (gains[n, c] - z_c . phi)^2``
    subject to ``sum(phi) == totals[n]`` (and ``phi_j = 0`` where ``varying[n, j]`` is false: a
    feature equal to its baseline is a dummy player, whose Shapley value is 0); (instances,
    features) float64.

    With ``phi = totals / m + psi`` over the ``m`` varying features, the sum constraint becomes
    ``sum(psi) = 0``: each coalition row is centred (which makes the fit blind to the direction
    of all-ones), and one extra row ``sum(psi) = 0`` (plus one ``psi_j = 0`` per dummy) makes
    the system full rank without moving its solution, so that a plain QR solves it. Every
    feature is treated alike (none is eliminated). When every feature varies, one
    factorisation serves all instances: they share the design and differ only in the
    right-hand side.
    """
    n_rows, n_features = int(gains.shape[0]), int(masks.shape[1])
    keep = (
        torch.ones(n_rows, n_features, dtype=torch.float64)
        if varying is None
        else varying.to(torch.float64)
    )
    counts = keep.sum(dim=1).clamp_min(1.0)
    even = keep * (totals / counts).unsqueeze(1)
    if masks.shape[0] == 0 or n_features == 1:
        return even
    z = masks.to(torch.float64)
    root = weights.sqrt().unsqueeze(1)
    if bool(keep.all()):
        design, rhs = _system(z, root, keep[:1], gains.T.unsqueeze(0), totals.view(1, 1, -1))
        psi = _solve(design, rhs)[0].T
    else:
        group = max(1, _MAX_ELEMENTS // max(1, (int(z.shape[0]) + n_features + 1) * n_features))
        parts = []
        for start in range(0, n_rows, group):
            stop = start + group
            design, rhs = _system(
                z,
                root,
                keep[start:stop],
                gains[start:stop].unsqueeze(2),
                totals[start:stop].view(-1, 1, 1),
            )
            parts.append(_solve(design, rhs).squeeze(2))
        psi = torch.cat(parts)
    psi = psi * keep
    psi = psi - keep * (psi.sum(dim=1) / counts).unsqueeze(1)  # sum exactly zero
    return even + psi


def _system(
    z: torch.Tensor,
    root: torch.Tensor,
    keep: torch.Tensor,
    gains: torch.Tensor,
    totals: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weighted, centred, full-rank least-squares system of ``constrained_fit``.

    Shapes: ``z`` (C, M), ``root`` (C, 1), ``keep`` (G, M), ``gains`` (G, C, K), ``totals``
    (G, 1, K); returns the design (G, rows, M) and right-hand side (G, rows, K).
    """
    kept = z.unsqueeze(0) * keep.unsqueeze(1)
    share = kept.sum(dim=2, keepdim=True) / keep.sum(dim=1).clamp_min(1.0).view(-1, 1, 1)
    design = [(kept - share * keep.unsqueeze(1)) * root, keep.unsqueeze(1) * root.mean()]
    rhs = [(gains - share * totals) * root]
    extra = 1
    if not bool(keep.all()):
        design.append(torch.diag_embed(1.0 - keep))
        extra += int(keep.shape[1])
    rhs.append(torch.zeros(gains.shape[0], extra, gains.shape[2], dtype=torch.float64))
    return torch.cat(design, dim=1), torch.cat(rhs, dim=1)


def _solve(design: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Least squares by QR when the design has full column rank, else minimum-norm (SVD).

    Rank-deficient designs (fewer distinct coalitions than features) take the SVD path.
    Neither path is LAPACK's default gelsy, whose pivoting made seeded results differ in the
    last bits from one call to the next.
    """
    if design.shape[-2] >= design.shape[-1]:
        q, r = torch.linalg.qr(design)
        diag = r.diagonal(dim1=-2, dim2=-1).abs()
        if bool((diag.amin(dim=-1) > 1e-9 * diag.amax(dim=-1)).all()):
            solved: torch.Tensor = torch.linalg.solve_triangular(r, q.mT @ rhs, upper=True)
            return solved
    least: torch.Tensor = torch.linalg.lstsq(design, rhs, driver="gelsd").solution
    return least


def kernel_shap(
    forward: ForwardFn,
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    targets: Sequence[int],
    *,
    input_outputs: torch.Tensor,
    baseline_outputs: torch.Tensor,
    n_samples: int,
    perturbations_per_eval: int,
    generator: torch.Generator,
    groups: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """KernelSHAP attributions of every instance at its target.

    Args:
        forward: maps a batch to logits (rows, outputs), without grad.
        inputs: (instances, *instance_shape).
        baselines: same shape: each instance's reference.
        targets: output index per instance.
        input_outputs: f(x) at each target (instances,), already computed by the caller.
        baseline_outputs: f(baseline) at each target (instances,).
        n_samples: coalitions per instance, the empty and full ones included (as in Captum).
        perturbations_per_eval: perturbed rows per forward pass.
        generator: the random source for the coalitions.
        groups: the player (e.g. pixel patch, :mod:`inhouse.explain.patches`) of each input
            feature, switched together; ``None``: every feature plays alone. A group's Shapley
            value is shared among its features by ``|x - baseline|`` (sums are kept).

    Returns:
        ``(attributions, params)``: (instances, features) float64 on the CPU, and metadata.
    """
    n_rows = int(inputs.shape[0])
    players = math.prod(inputs.shape[1:]) if groups is None else int(groups.max()) + 1
    fx = input_outputs.detach().double().cpu()
    fb = baseline_outputs.detach().double().cpu()
    masks, weights, kind = shapley_coalitions(players, n_samples - 2, generator)
    expanded = masks if groups is None else masks[:, groups]
    values, passes = coalition_values(
        forward, inputs, baselines, expanded, targets, rows_per_pass=perturbations_per_eval
    )
    if groups is None:
        varying = (inputs.reshape(n_rows, -1) != baselines.reshape(n_rows, -1)).cpu()
    else:
        varying = group_varying(inputs, baselines, groups)
    attributions = constrained_fit(masks, weights, values - fb.unsqueeze(1), fx - fb, varying)
    if groups is not None:
        attributions = spread(attributions, inputs, baselines, groups)
    params: dict[str, Any] = {
        "backend": "inhouse",
        "n_samples": n_samples,
        "perturbations_per_eval": perturbations_per_eval,
        "coalitions": kind,
        "coalitions_evaluated": int(masks.shape[0]),
        "features_at_baseline": int((~varying).sum()),
        "forward_passes": passes,
        "forward_passes_per_instance": round(passes / n_rows, 3),
        "solver": SOLVER,
    }
    return attributions, params
