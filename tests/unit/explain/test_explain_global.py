"""Global importance (mean |SHAP|), rank correlation and version comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from inhouse.errors import InvalidInputError
from inhouse.explain import (
    GlobalImportance,
    compare_importance,
    global_importance,
    rank_correlation,
)

NAMES = ["age", "dose", "weight", "marker", "height", "noise"]


def planted(important: int, n_features: int = 6) -> nn.Module:
    """Two-class logits (-z, z) with z driven mostly by feature ``important``."""
    torch.manual_seed(0)
    w = torch.rand(n_features) * 0.2
    w[important] = 3.0
    lin = nn.Linear(n_features, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.stack([-w, w]))
        lin.bias.zero_()
    return lin


@pytest.fixture(scope="module")
def background() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(40, 6))


def test_global_importance_ranks_the_planted_feature_first(background: np.ndarray) -> None:
    result = global_importance(
        planted(3), background, feature_names=NAMES, n_samples=40, max_rows=12
    )
    assert result.ranking()[0] == "marker"
    assert result.top(1)[0][0] == "marker"
    assert result.n_background == 12
    assert result.importance.shape == (6,)
    assert result.metadata["background_rows_given"] == 40
    assert result.metadata["max_abs_additivity_gap"] < 1e-3


def test_global_importance_round_trips_through_json(background: np.ndarray) -> None:
    result = global_importance(planted(1), background[:5], n_samples=30)
    again = GlobalImportance.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.feature_names == [f"feature_{i}" for i in range(6)]
    np.testing.assert_array_equal(again.importance, result.importance)
    assert again.ranking()[0] == "feature_1"


def test_rank_correlation() -> None:
    a = [0.1, 0.5, 0.3, 0.9]
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert rank_correlation(a, [-v for v in a]) == pytest.approx(-1.0)
    assert rank_correlation(a, [1.0, 5.0, 3.0, 90.0]) == pytest.approx(1.0)  # ranks only
    assert rank_correlation([1.0, 2.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]) == pytest.approx(
        0.9486832980505138  # scipy.stats.spearmanr, ties averaged
    )
    assert rank_correlation([1.0, 1.0], [1.0, 1.0]) == 1.0
    assert rank_correlation([1.0, 1.0], [1.0, 2.0]) == 0.0
    with pytest.raises(InvalidInputError):
        rank_correlation([1.0, 2.0], [1.0])
    with pytest.raises(InvalidInputError):
        rank_correlation([1.0, np.nan], [1.0, 2.0])


def test_compare_importance_aligns_by_name() -> None:
    old = GlobalImportance(["a", "b", "c"], np.array([3.0, 2.0, 1.0]), 10)
    same_reordered = GlobalImportance(["c", "a", "b"], np.array([1.0, 3.0, 2.0]), 10)
    flipped = GlobalImportance(["a", "b", "c"], np.array([1.0, 2.0, 3.0]), 10)
    assert compare_importance(old, same_reordered, k=2).spearman == pytest.approx(1.0)
    result = compare_importance(old, flipped, k=1)
    assert result.spearman == pytest.approx(-1.0)
    assert result.top_k_overlap == 0.0
    assert result.to_dict()["top_old"] == ["a"]
    with pytest.raises(InvalidInputError, match="different features"):
        compare_importance(old, GlobalImportance(["a", "b", "x"], np.ones(3), 1))
