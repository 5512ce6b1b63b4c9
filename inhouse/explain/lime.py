"""LIME, vectorised: one set of binary perturbations for every instance, all surrogates solved
as one batched linear system.

The mathematics follow Captum's ``Lime`` defaults: binary interpretable features (a feature
keeps the instance's value or takes the baseline's), each drawn on or off with probability 1/2;
each perturbation weighted by an exponential kernel ``exp(-d^2 / (2 w^2))`` of its cosine (or
Euclidean) distance ``d`` to the instance in input space, kernel width ``w = 1``; and a weighted
linear surrogate with an intercept whose coefficients are the attributions (a feature equal to
its baseline, which no perturbation can change, is left out and gets 0). The surrogate here
is a ridge regression with a small penalty (``alpha = 1e-3`` on weight-normalised squared
error) rather than Captum's Lasso (``alpha = 0.01``): a closed form that batches, dense
rather than sparse, and well posed when there are more features than samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch

from inhouse.explain._coalitions import coalition_values, unique_with_counts
from inhouse.explain._inputs import ForwardFn
from inhouse.explain.patches import group_varying, spread

Distance = Literal["cosine", "euclidean"]
ALPHA = 1e-3
KERNEL_WIDTH = 1.0
_EPS = 1e-8  # as torch.nn.CosineSimilarity
_MAX_ELEMENTS = 1 << 24  # float64 elements of one batched solve (128 MiB)


def log_similarities(
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    masks: torch.Tensor,
    *,
    distance: Distance = "cosine",
    kernel_width: float = KERNEL_WIDTH,
) -> torch.Tensor:
    """``log`` of the exponential kernel of each perturbation's distance to its instance.

    Computed from the masks alone (the perturbed rows are never materialised): with ``z`` binary,
    ``x . p = z . (x^2 - x b) + x . b`` and ``|p|^2 = z . (x^2 - b^2) + |b|^2``.

    Returns:
        (instances, coalitions) float64 on the CPU.
    """
    x = inputs.reshape(int(inputs.shape[0]), -1).detach().double().cpu()
    b = baselines.reshape(int(baselines.shape[0]), -1).detach().double().cpu()
    z = masks.to(torch.float64)
    if distance == "cosine":
        dot = (x * b).sum(dim=1) + z @ (x * x - x * b).T
        p_norm2 = (b * b).sum(dim=1) + z @ (x * x - b * b).T
        x_norm2 = (x * x).sum(dim=1)
        cosine = dot / (x_norm2 * p_norm2).clamp_min(_EPS * _EPS).sqrt()
        squared = (1.0 - cosine) ** 2
    elif distance == "euclidean":
        squared = (1.0 - z) @ ((x - b) ** 2).T
    else:
        raise ValueError(f"distance must be 'cosine' or 'euclidean', got {distance!r}")
    result: torch.Tensor = -squared.T / (2.0 * kernel_width**2)
    return result


def weighted_ridge(
    masks: torch.Tensor,
    log_weights: torch.Tensor,
    values: torch.Tensor,
    *,
    alpha: float = ALPHA,
    varying: torch.Tensor | None = None,
) -> torch.Tensor:
    """Coefficients of one weighted ridge regression (free intercept) per instance.

    Minimises ``sum_c w_nc (y_nc - b_n - z_c . beta_n)^2 / sum_c w_nc + alpha |beta_n|^2``.
    Features where ``varying[n]`` is false (equal to their baseline: switching them changes
    nothing) are left out of instance ``n``'s fit and get exactly 0.
    The weights are given as logs and normalised per instance (the fit is unchanged by their
    scale), so far perturbations cannot underflow every weight to zero. Solved in the primal
    (features x features) or dual (samples x samples) form, whichever is smaller.

    Returns:
        (instances, features) float64.
    """
    n_rows, n_features = int(values.shape[0]), int(masks.shape[1])
    z = masks.to(torch.float64)
    keep = torch.ones(n_rows, n_features, dtype=torch.float64)
    if varying is not None:
        keep = varying.to(torch.float64)
    weights = torch.softmax(log_weights, dim=1)  # exp, normalised to sum 1 per instance
    z_mean = (weights @ z) * keep
    y_mean = (weights * values).sum(dim=1)
    size = min(n_features, int(z.shape[0]))
    group = max(1, _MAX_ELEMENTS // max(1, int(z.shape[0]) * n_features + size * size))
    coefs = []
    for start in range(0, n_rows, group):
        stop = start + group
        w = weights[start:stop].sqrt()
        centred = z.unsqueeze(0) * keep[start:stop].unsqueeze(1) - z_mean[start:stop].unsqueeze(1)
        a = centred * w.unsqueeze(2)
        y = (values[start:stop] - y_mean[start:stop].unsqueeze(1)) * w
        if n_features <= z.shape[0]:
            gram = a.transpose(1, 2) @ a + alpha * torch.eye(n_features, dtype=torch.float64)
            rhs = (a.transpose(1, 2) @ y.unsqueeze(2)).squeeze(2)
            coefs.append(torch.linalg.solve(gram, rhs))
        else:
            kernel = a @ a.transpose(1, 2) + alpha * torch.eye(int(z.shape[0]), dtype=torch.float64)
            dual = torch.linalg.solve(kernel, y)
            coefs.append((a.transpose(1, 2) @ dual.unsqueeze(2)).squeeze(2))
    return torch.cat(coefs, dim=0)


def lime(
    forward: ForwardFn,
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    targets: Sequence[int],
    *,
    n_samples: int,
    perturbations_per_eval: int,
    generator: torch.Generator,
    distance: Distance = "cosine",
    kernel_width: float = KERNEL_WIDTH,
    alpha: float = ALPHA,
    groups: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """LIME attributions (surrogate coefficients) of every instance at its target.

    Args:
        forward: maps a batch to logits (rows, outputs), without grad.
        inputs: (instances, *instance_shape).
        baselines: same shape: the value of a feature switched off.
        targets: output index per instance.
        n_samples: perturbations drawn (shared by every instance).
        perturbations_per_eval: perturbed rows per forward pass.
        generator: the random source for the perturbations.
        distance: ``cosine`` (Captum's default) or ``euclidean``, in input space.
        kernel_width: width ``w`` of the exponential kernel.
        alpha: ridge penalty on the weight-normalised squared error.
        groups: the interpretable feature (e.g. pixel patch, :mod:`inhouse.explain.patches`)
            of each input feature, switched together; ``None``: every feature on its own. A
            group's coefficient is shared among its features by ``|x - baseline|``.

    Returns:
        ``(attributions, params)``: (instances, features) float64 on the CPU, and metadata.
    """
    n_rows = int(inputs.shape[0])
    players = math.prod(inputs.shape[1:]) if groups is None else int(groups.max()) + 1
    drawn = torch.rand(n_samples, players, generator=generator) < 0.5
    masks, counts = unique_with_counts(drawn)
    expanded = masks if groups is None else masks[:, groups]
    values, passes = coalition_values(
        forward, inputs, baselines, expanded, targets, rows_per_pass=perturbations_per_eval
    )
    log_w = log_similarities(
        inputs, baselines, expanded, distance=distance, kernel_width=kernel_width
    ) + counts.log().unsqueeze(0)
    if groups is None:
        varying = (inputs.reshape(n_rows, -1) != baselines.reshape(n_rows, -1)).cpu()
    else:
        varying = group_varying(inputs, baselines, groups)
    attributions = weighted_ridge(masks, log_w, values, alpha=alpha, varying=varying)
    if groups is not None:
        attributions = spread(attributions, inputs, baselines, groups)
    params: dict[str, Any] = {
        "backend": "inhouse",
        "n_samples": n_samples,
        "perturbations_per_eval": perturbations_per_eval,
        "perturbations_evaluated": int(masks.shape[0]),
        "features_at_baseline": int((~varying).sum()),
        "forward_passes": passes,
        "forward_passes_per_instance": round(passes / n_rows, 3),
        "interpretable_model": f"Ridge(alpha={alpha:g}), weighted",
        "similarity": f"exp(-d^2 / (2 * {kernel_width:g}^2)), {distance} distance",
    }
    return attributions, params
