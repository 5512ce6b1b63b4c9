"""Global importance recorded at registration and compared with the champion's."""

from __future__ import annotations

import torch
from torch import nn

from inhouse.explain.lineage import importance_lineage


def _model(weights: list[float]) -> nn.Module:
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([weights, [0.0, 0.0, 0.0]]))
        model.bias.zero_()
    return model


def test_importance_follows_the_weights_and_is_compared() -> None:
    torch.manual_seed(0)
    background = torch.randn(40, 3)
    names = ["a", "b", "c"]
    first = importance_lineage(
        _model([5.0, 1.0, 0.1]),
        background,
        feature_names=names,
        champion_lineage=None,
        rows=20,
        n_samples=64,
    )
    ranking = first["global_importance"]
    assert ranking["feature_names"] == names and "importance_vs_champion" not in first
    values = ranking["importance"] if "importance" in ranking else ranking["values"]
    assert values[0] > values[1] > values[2]
    same = importance_lineage(
        _model([5.0, 1.0, 0.1]),
        background,
        feature_names=names,
        champion_lineage=first,
        rows=20,
        n_samples=64,
    )
    assert same["importance_vs_champion"]["spearman"] > 0.99
    flipped = importance_lineage(
        _model([0.1, 1.0, 5.0]),
        background,
        feature_names=names,
        champion_lineage=first,
        rows=20,
        n_samples=64,
    )
    assert flipped["importance_vs_champion"]["spearman"] < 0
