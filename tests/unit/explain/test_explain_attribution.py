"""explain(): Integrated Gradients, KernelSHAP and LIME on tiny models made here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from inhouse.explain import ExplainOptions, Explanation, explain


def mlp(n_in: int = 8, hidden: int = 16, n_out: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out))


def linear(weight: list[list[float]], bias: list[float] | None = None) -> nn.Linear:
    w = torch.tensor(weight, dtype=torch.float32)
    layer = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.bias.copy_(torch.tensor(bias) if bias is not None else torch.zeros(w.shape[0]))
    return layer


W = [[0.5, -1.0, 2.0, 0.0, 0.25], [-0.3, 0.7, 0.1, 1.5, -2.0]]


def test_ig_completeness_delta_is_small_on_an_mlp() -> None:
    model = mlp()
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    result = explain(model, x, method="ig", options={"n_steps": 64})
    assert result.attributions.shape == (5, 8)
    assert np.abs(result.delta).max() < 1e-3
    assert result.metadata["delta_kind"] == "completeness"
    assert result.metadata["forward_passes"] == 1  # the whole path in one batched pass
    assert result.targets == result.predictions  # target defaults to the predicted class
    assert result.probabilities is not None
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, rtol=1e-9)


def test_ig_on_a_linear_model_is_exactly_w_times_x_minus_baseline() -> None:
    model = linear(W, bias=[0.3, -0.2])
    x = np.array([[1.0, 2.0, -1.0, 0.5, 3.0], [0.0, -1.0, 1.0, 2.0, -0.5]])
    b = np.array([0.5, 0.5, 0.5, 0.5, 0.5])
    result = explain(model, x, method="ig", target=1, baseline=b, options={"n_steps": 8})
    expected = (x - b) * np.array(W[1])
    np.testing.assert_allclose(result.attributions, expected, atol=1e-5)
    assert np.abs(result.delta).max() < 1e-5
    assert result.baseline_kind == "custom"
    np.testing.assert_allclose(result.baseline, np.tile(b, (2, 1)))


def test_shap_on_a_linear_model_gives_its_shapley_values() -> None:
    model = linear(W)
    x = np.array([[1.0, 2.0, -1.0, 0.5, 3.0], [0.0, -1.0, 1.0, 2.0, -0.5]])
    background = np.random.default_rng(0).normal(size=(20, 5))
    opts = ExplainOptions(method="shap", n_samples=64, baseline="mean")
    result = explain(model, x, target=0, background=background, options=opts)
    expected = (x - background.mean(axis=0)) * np.array(W[0])
    np.testing.assert_allclose(result.attributions, expected, atol=1e-3)
    assert np.abs(result.delta).max() < 1e-3
    assert result.baseline_kind == "mean"
    assert result.metadata["method_name"] == "KernelShap"


def test_shap_batched_perturbations_equal_one_at_a_time() -> None:
    model = mlp(n_in=6)
    x = torch.randn(2, 6, generator=torch.Generator().manual_seed(2))
    one = explain(
        model, x, options={"method": "shap", "n_samples": 50, "perturbations_per_eval": 1}
    )
    many = explain(
        model, x, options={"method": "shap", "n_samples": 50, "perturbations_per_eval": 25}
    )
    np.testing.assert_allclose(one.attributions, many.attributions, atol=1e-5)
    rows = 2 * one.metadata["coalitions_evaluated"]  # both instances share their coalitions
    assert 0 < one.metadata["coalitions_evaluated"] <= 48  # 50 less the empty and full ones
    assert one.metadata["forward_passes"] == rows
    assert many.metadata["forward_passes"] == math.ceil(rows / 25)


def test_lime_ranks_the_dominant_feature_first() -> None:
    model = linear([[0.1, 5.0, -0.1, 0.2, 0.05, 0.1], [0.0] * 6])
    x = np.ones((3, 6))
    result = explain(model, x, method="lime", target=0, options={"n_samples": 200})
    assert result.attributions.shape == (3, 6)
    assert result.metadata["delta_kind"] == "additivity"
    assert all(int(np.argmax(np.abs(row))) == 1 for row in result.attributions)


def test_sampling_is_seeded_and_leaves_the_global_rng_alone() -> None:
    model = mlp(n_in=5)
    x = np.ones((1, 5))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = explain(model, x, method="shap", options={"n_samples": 30, "seed": 7})
    assert torch.equal(torch.get_rng_state(), state)
    b = explain(model, x, method="shap", options={"n_samples": 30, "seed": 7})
    np.testing.assert_array_equal(a.attributions, b.attributions)


def test_model_mode_restored_and_no_parameter_gradients() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 2))
    model.train()
    x = np.ones((2, 4))
    first = explain(model, x)
    second = explain(model, x)
    np.testing.assert_array_equal(first.attributions, second.attributions)  # dropout was off
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_works_when_the_caller_is_in_inference_mode() -> None:
    model = mlp()
    with torch.inference_mode():
        result = explain(model, torch.ones(8))
    assert result.attributions.shape == (1, 8)
    assert np.abs(result.delta).max() < 1e-3


def test_image_shaped_inputs_keep_their_shape() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x = torch.rand(2, 1, 8, 8)
    result = explain(model, x, target=[3, 4])
    assert result.input_shape == (1, 8, 8)
    assert result.attributions.shape == (2, 64)
    assert result.targets == [3, 4]


def test_to_dict_is_json_ready_and_round_trips() -> None:
    names = [f"f{i}" for i in range(8)]
    result = explain(mlp(), np.ones((2, 8)), feature_names=names)
    data = json.loads(json.dumps(result.to_dict()))
    again = Explanation.from_dict(data)
    assert again.feature_names == names
    np.testing.assert_array_equal(again.attributions, result.attributions)
    assert again.metadata["method_name"] == "IntegratedGradients"
    assert data["metadata"]["runtime_ms"] >= 0


@pytest.mark.parametrize("method", ["ig", "shap", "lime"])
def test_one_dimensional_model_output_is_one_column(method: str) -> None:
    class Score(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = linear([[1.0, -2.0, 0.5]])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.lin(x)
            return out.squeeze(1)

    result = explain(Score(), [1.0, 1.0, 1.0], method=method, options={"n_samples": 20})
    assert result.targets == [0]
    assert result.probabilities is None
    assert result.attributions.shape == (1, 3)
