"""explain() refuses over-large requests (413) and wrong inputs (422) with one-line messages."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from inhouse.errors import InvalidInputError, PayloadTooLargeError
from inhouse.explain import ExplainLimits, explain


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


SMALL = ExplainLimits(max_instances=4, max_n_steps=100, max_n_samples=100, max_model_rows=300)


@pytest.mark.parametrize(
    ("n_rows", "options", "fragment"),
    [
        (5, {"method": "ig"}, "instances"),
        (1, {"method": "ig", "n_steps": 101}, "n_steps"),
        (1, {"method": "shap", "n_samples": 101}, "n_samples"),
        (1, {"method": "lime", "n_samples": 101}, "n_samples"),
        (4, {"method": "shap", "n_samples": 100}, "model rows"),
        (1, {"method": "shap", "n_samples": 50, "perturbations_per_eval": 2000}, "perturbations"),
    ],
)
def test_over_large_requests_are_refused(
    model: nn.Module, n_rows: int, options: dict[str, object], fragment: str
) -> None:
    with pytest.raises(PayloadTooLargeError, match=fragment) as info:
        explain(model, np.ones((n_rows, 4)), options=options, limits=SMALL)
    assert "\n" not in info.value.message
    assert info.value.status_code == 413


def test_too_many_features_is_refused(model: nn.Module) -> None:
    with pytest.raises(PayloadTooLargeError, match="features"):
        explain(model, np.ones((1, 4)), limits=ExplainLimits(max_features=3))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_or_inf_inputs_are_invalid(model: nn.Module, bad: float) -> None:
    with pytest.raises(InvalidInputError, match="NaN or Inf"):
        explain(model, [[1.0, bad, 0.0, 0.0]])


def test_nan_baseline_and_background_are_invalid(model: nn.Module) -> None:
    with pytest.raises(InvalidInputError, match="baseline contains NaN"):
        explain(model, np.ones(4), baseline=[0.0, math.nan, 0.0, 0.0])
    with pytest.raises(InvalidInputError, match="background contains NaN"):
        explain(model, np.ones(4), background=[[math.nan] * 4], options={"baseline": "mean"})


def test_wrong_feature_count_is_invalid(model: nn.Module) -> None:
    with pytest.raises(InvalidInputError, match="do not fit the model") as info:
        explain(model, np.ones((2, 5)))
    assert "\n" not in info.value.message
    with pytest.raises(InvalidInputError, match="wrong feature count"):
        explain(model, np.ones((2, 4)), feature_names=["a", "b", "c"])
    with pytest.raises(InvalidInputError, match="baseline has 3 values"):
        explain(model, np.ones((2, 4)), baseline=[0.0, 0.0, 0.0])
    with pytest.raises(InvalidInputError, match="wrong feature count"):
        explain(model, np.ones(4), background=np.ones((3, 5)), options={"baseline": "mean"})


def test_non_numeric_and_empty_inputs_are_invalid(model: nn.Module) -> None:
    with pytest.raises(InvalidInputError, match="not a numeric array"):
        explain(model, [["a", "b", "c", "d"]])
    with pytest.raises(InvalidInputError, match="empty"):
        explain(model, np.ones((0, 4)))
    with pytest.raises(InvalidInputError, match="scalar"):
        explain(model, 3.0)


def test_bad_targets_are_invalid(model: nn.Module) -> None:
    with pytest.raises(InvalidInputError, match="out of range"):
        explain(model, np.ones((1, 4)), target=3)
    with pytest.raises(InvalidInputError, match="one per instance"):
        explain(model, np.ones((2, 4)), target=[0, 1, 2])


def test_bad_method_and_options_are_invalid(model: nn.Module) -> None:
    with pytest.raises(InvalidInputError, match="unknown method"):
        explain(model, np.ones(4), method="deeplift")
    with pytest.raises(InvalidInputError, match="n_steps"):
        explain(model, np.ones(4), options={"n_steps": 1})
    with pytest.raises(InvalidInputError, match="limits"):
        explain(model, np.ones(4), options={"limits": {"max_instances": 10**9}})
    with pytest.raises(InvalidInputError, match="needs a background"):
        explain(model, np.ones(4), options={"baseline": "mean"})
