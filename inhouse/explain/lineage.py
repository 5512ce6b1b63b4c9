"""Global explanations recorded with each registered version, and compared with the champion.

At registration the mean |KernelSHAP| per feature over a seeded sample of training rows goes
into the version's lineage (``global_importance``); when a champion exists, the Spearman
correlation and top-k overlap against it go in too (``importance_vs_champion``), so a
reviewer (or the coordinator's gate) sees when a new version decides for other reasons.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from inhouse.explain.importance import (
    GlobalImportance,
    compare_importance,
    global_importance,
)
from inhouse.explain.patches import ImageShape

DEFAULT_ROWS = 50


def importance_lineage(
    model: nn.Module,
    background: torch.Tensor,
    *,
    feature_names: list[str],
    champion_lineage: dict[str, Any] | None,
    rows: int = DEFAULT_ROWS,
    n_samples: int = 200,
    image: ImageShape | None = None,
) -> dict[str, Any]:
    """Lineage entries for ``model``: its global importance and its comparison to the champion.

    ``image`` (``(height, width)``): SHAP on pixel patches, the importance a pixel map."""
    importance = global_importance(
        model,
        background,
        feature_names=feature_names,
        max_rows=rows,
        n_samples=n_samples,
        perturbations_per_eval=n_samples,
        image=image,
    )
    entries: dict[str, Any] = {"global_importance": importance.to_dict()}
    previous = (champion_lineage or {}).get("global_importance")
    if previous:
        comparison = compare_importance(GlobalImportance.from_dict(previous), importance)
        entries["importance_vs_champion"] = comparison.to_dict()
    return entries
