"""Coalition sampling and batched model evaluation shared by our KernelSHAP and LIME (private).

A coalition is a boolean row over the features: ``True`` keeps the instance's value, ``False``
puts the baseline's. One set of coalitions is drawn per call and shared by every instance, so
an instance gets the same coalitions (and, with a seed, the same attributions) whether it is
explained alone or in a batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from inhouse.explain._inputs import ForwardFn


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU generator of its own: seeded, or randomly seeded when ``seed`` is ``None``.

    Sampling from it never touches torch's global RNG.
    """
    generator = torch.Generator(device="cpu")
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


@contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch's RNG for the block without disturbing the caller's RNG state."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def unique_with_counts(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct coalitions and how often each was drawn (float64).

    A weighted least-squares fit with each distinct row weighted by its count is the same fit
    as one over the repeated rows, for fewer model evaluations.
    """
    if masks.shape[0] == 0:
        return masks, torch.zeros(0, dtype=torch.float64)
    unique, counts = torch.unique(masks.to(torch.uint8), dim=0, return_counts=True)
    return unique.bool(), counts.to(torch.float64)


def subsets_of_sizes(
    sizes: torch.Tensor, n_features: int, generator: torch.Generator
) -> torch.Tensor:
    """One uniformly random subset of ``sizes[i]`` features per row, as a (rows, features) mask."""
    scores = torch.rand(int(sizes.shape[0]), n_features, generator=generator)
    # The rank of each feature's random score in its row; the ``k`` lowest ranks are kept.
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return ranks < sizes.unsqueeze(1)


def coalition_values(
    forward: ForwardFn,
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    masks: torch.Tensor,
    targets: Sequence[int],
    *,
    rows_per_pass: int,
) -> tuple[torch.Tensor, int]:
    """The model's target output on every (instance, coalition) pair.

    Args:
        forward: maps a batch (rows, *instance_shape) to logits (rows, outputs).
        inputs: (instances, *instance_shape) the explained instances.
        baselines: same shape, the value a feature takes when left out of a coalition.
        masks: (coalitions, features) boolean, features in flattened order.
        targets: output index per instance.
        rows_per_pass: perturbed rows stacked into one forward pass (``perturbations_per_eval``).

    Returns:
        ``(values, forward_passes)``: values is (instances, coalitions) float64 on the CPU.
    """
    n_rows, n_coalitions = int(inputs.shape[0]), int(masks.shape[0])
    instance_shape = tuple(inputs.shape[1:])
    total = n_rows * n_coalitions
    values = torch.empty(total, dtype=torch.float64)
    if total == 0:
        return values.reshape(n_rows, n_coalitions), 0
    device = inputs.device
    flat_x = inputs.reshape(n_rows, -1)
    flat_b = baselines.reshape(n_rows, -1)
    keep = masks.to(device)
    wanted = torch.as_tensor(list(targets), dtype=torch.long, device=device)
    step = max(1, rows_per_pass)
    passes = 0
    with torch.no_grad():
        # Instance-major rows, built a chunk at a time so memory stays at one forward pass.
        for start in range(0, total, step):
            index = torch.arange(start, min(start + step, total), device=device)
            row, coalition = index // n_coalitions, index % n_coalitions
            perturbed = torch.where(keep[coalition], flat_x[row], flat_b[row])
            logits = forward(perturbed.reshape(-1, *instance_shape))
            picked = logits.gather(1, wanted[row].unsqueeze(1)).squeeze(1)
            values[start : start + int(index.shape[0])] = picked.detach().double().cpu()
            passes += 1
    return values.reshape(n_rows, n_coalitions), passes
