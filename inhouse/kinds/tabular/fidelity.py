"""How faithfully a compressed tabular model explains like its parent: the Spearman correlation
of their Integrated Gradients attributions on a fixed probe of test rows."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from inhouse.explain import explain, rank_correlation

FIDELITY_PROBE_ROWS = 64  # ExplainLimits' default max_instances


def probe_rows(inputs: torch.Tensor, rows: int = FIDELITY_PROBE_ROWS) -> torch.Tensor:
    """A fixed probe set: ``rows`` rows spread evenly over ``inputs`` (all when fewer)."""
    n = int(inputs.shape[0])
    if n <= rows:
        return inputs
    index = torch.linspace(0, n - 1, rows).round().long()
    return inputs[index]


def explanation_fidelity(
    parent: nn.Module, compressed: nn.Module, probe: torch.Tensor
) -> tuple[float, list[float]]:
    """Mean per-row Spearman correlation of the two models' Integrated Gradients attributions.

    Both models explain the parent's predicted class, so a compressed model that predicts
    another class is judged on the output the parent's explanation was about.

    Returns:
        ``(mean, per_row)`` correlations in [-1, 1].
    """
    with torch.no_grad():
        logits = parent(probe)
    targets = [int(t) for t in getattr(logits, "logits", logits).argmax(dim=-1).tolist()]
    ours = explain(parent, probe, method="ig", target=targets).attributions
    theirs = explain(compressed, probe, method="ig", target=targets).attributions
    per_row = [rank_correlation(ours[i], theirs[i]) for i in range(len(targets))]
    return float(np.mean(per_row)), per_row
