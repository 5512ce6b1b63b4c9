"""Our vectorised KernelSHAP and LIME: batching, dummies, edge cases, backends and timing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from inhouse.errors import InvalidInputError
from inhouse.explain import explain
from inhouse.explain._coalitions import make_generator
from inhouse.explain.lime import lime
from inhouse.explain.timing import compare_backends


def mlp(n_in: int, n_out: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, 16), nn.Tanh(), nn.Linear(16, n_out))


@pytest.mark.parametrize("method", ["shap", "lime"])
def test_an_instance_gets_the_same_attributions_alone_or_in_a_batch(method: str) -> None:
    model = mlp(12)
    x = torch.randn(3, 12, generator=torch.Generator().manual_seed(1))
    options = {"n_samples": 80, "seed": 3}
    together = explain(model, x, method=method, target=0, options=options)
    for i in range(3):
        alone = explain(model, x[i], method=method, target=0, options=options)
        np.testing.assert_allclose(alone.attributions[0], together.attributions[i], atol=1e-6)


@pytest.mark.parametrize("method", ["shap", "lime"])
def test_perturbations_per_eval_only_changes_the_chunking(method: str) -> None:
    model = mlp(12)
    x = torch.randn(2, 12, generator=torch.Generator().manual_seed(2))
    one = explain(model, x, method=method, options={"n_samples": 40, "perturbations_per_eval": 1})
    many = explain(model, x, method=method, options={"n_samples": 40, "perturbations_per_eval": 64})
    np.testing.assert_allclose(one.attributions, many.attributions, atol=1e-6)  # float32 sums
    assert one.metadata["forward_passes"] > many.metadata["forward_passes"]


@pytest.mark.parametrize("method", ["shap", "lime"])
def test_features_equal_to_their_baseline_get_exactly_zero(method: str) -> None:
    model = mlp(8)
    x = np.array([[0.0, 1.0, 0.0, -2.0, 0.5, 0.0, 1.5, 0.0], [1.0] * 8])
    result = explain(model, x, method=method, options={"n_samples": 100})
    assert np.all(result.attributions[0, [0, 2, 5, 7]] == 0.0)
    assert np.all(result.attributions[0, [1, 3, 4, 6]] != 0.0)
    assert np.all(result.attributions[1] != 0.0)
    assert result.metadata["features_at_baseline"] == 4
    if method == "shap":
        assert np.abs(result.delta).max() < 1e-9


@pytest.mark.parametrize("method", ["shap", "lime"])
def test_fewer_samples_than_features_still_gives_finite_attributions(method: str) -> None:
    model = mlp(40)
    x = torch.randn(2, 40, generator=torch.Generator().manual_seed(3))
    result = explain(model, x, method=method, options={"n_samples": 10})
    assert np.isfinite(result.attributions).all()
    if method == "shap":
        assert np.abs(result.delta).max() < 1e-9  # additivity holds even underdetermined


def test_image_shaped_inputs_work_with_the_sampling_methods() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x = torch.rand(2, 1, 8, 8)
    for method in ("shap", "lime"):
        result = explain(model, x, method=method, target=[3, 4], options={"n_samples": 50})
        assert result.attributions.shape == (2, 64)
        assert result.input_shape == (1, 8, 8)


def test_lime_euclidean_kernel_does_not_underflow_far_from_the_instance() -> None:
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 2.0, 0.0, 0.1]]))
    x = torch.full((1, 4), 100.0)  # a switched-off feature is 100 away: exp(-5000) == 0.0

    def run(kernel_width: float) -> tuple[torch.Tensor, dict[str, object]]:
        return lime(
            model,
            x,
            torch.zeros_like(x),
            [0],
            n_samples=64,
            perturbations_per_eval=64,
            generator=make_generator(0),
            distance="euclidean",
            kernel_width=kernel_width,
        )

    narrow, params = run(1.0)
    assert torch.isfinite(narrow).all()  # the weights are normalised in log space
    assert "euclidean" in str(params["similarity"])
    wide, _ = run(150.0)
    assert int(wide[0].abs().argmax()) == 1
    np.testing.assert_allclose(wide[0, 1].item(), 200.0, rtol=0.01)  # 2 x (100 - 0)


def test_sampling_leaves_the_global_rng_alone() -> None:
    model = mlp(5)  # seeds torch: before the state is taken
    state = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    for method in ("shap", "lime"):
        explain(model, np.ones((2, 5)), method=method, options={"n_samples": 30, "seed": None})
    assert torch.equal(torch.get_rng_state(), state)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)


def test_backends_are_named_in_the_metadata_and_checked() -> None:
    model = mlp(5)
    x = np.ones((1, 5))
    assert explain(model, x, method="shap").metadata["backend"] == "inhouse"
    assert explain(model, x, method="lime", backend="captum").metadata["backend"] == "captum"
    assert explain(model, x, method="ig").metadata["backend"] == "captum"
    with pytest.raises(InvalidInputError, match="unknown backend"):
        explain(model, x, method="shap", backend="sklearn")


def test_compare_backends_reports_both_methods() -> None:
    model = mlp(6)
    x = torch.randn(2, 6, generator=torch.Generator().manual_seed(4))
    threads = torch.get_num_threads()
    report = compare_backends(model, x, n_samples=20, repeats=1)
    assert torch.get_num_threads() == threads  # restored
    assert report["threads"] == 1 and report["n_instances"] == 2
    assert report["perturbations_per_eval"] == {"inhouse": 64, "captum": 1}
    for method in ("shap", "lime"):
        entry = report[method]
        assert entry["inhouse_ms_per_instance"] > 0 and entry["captum_ms_per_instance"] > 0
        ratio = entry["inhouse_ms_per_instance"] / entry["captum_ms_per_instance"]
        assert entry["speedup"] == pytest.approx(1 / ratio, rel=0.05)
        assert -1.0 <= entry["rank_correlation"] <= 1.0
    with pytest.raises(InvalidInputError, match="repeats"):
        compare_backends(model, x, repeats=0)
