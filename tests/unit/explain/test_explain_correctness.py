"""Are the attributions right? IG completeness, exact Shapley values, the ``shap`` package,
a hand-built model every method must get right, and our backend against Captum's."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from inhouse.explain import explain, rank_correlation


def mlp(n_in: int, hidden: int = 16, n_out: int = 3, seed: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out))


def outputs(model: nn.Module, rows: np.ndarray, target: int) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.as_tensor(np.asarray(rows), dtype=torch.float32))
    return out[:, target].double().numpy()


def exact_shapley(model: nn.Module, x: np.ndarray, b: np.ndarray, target: int) -> np.ndarray:
    """Shapley values by their definition: every coalition, with the subset-size weights."""
    m = x.shape[0]
    subsets = list(itertools.product([False, True], repeat=m))
    values = outputs(model, np.array([np.where(s, x, b) for s in subsets]), target)
    value = dict(zip(subsets, values, strict=True))
    phi = np.zeros(m)
    for s in subsets:
        k = sum(s)
        for j in range(m):
            if not s[j]:
                with_j = tuple(True if i == j else s[i] for i in range(m))
                weight = math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m)
                phi[j] += weight * (value[with_j] - value[s])
    return phi


def test_ig_completeness_within_5_percent_on_a_random_mlp() -> None:
    torch.manual_seed(8)
    model = nn.Sequential(
        nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 4)
    )
    x = 2.0 * torch.randn(6, 10, generator=torch.Generator().manual_seed(4)).numpy()
    result = explain(model, x, method="ig", target=2, options={"n_steps": 50})
    gain = outputs(model, x, 2) - outputs(model, np.zeros_like(x), 2)  # f(x) - f(baseline)
    assert np.abs(gain).min() > 0.01  # the check below is relative: gains must not vanish
    np.testing.assert_allclose(result.attributions.sum(axis=1), gain, rtol=0.05)
    np.testing.assert_allclose(result.delta, result.attributions.sum(axis=1) - gain, atol=1e-5)


def test_exhaustive_kernel_shap_is_the_exact_shapley_values() -> None:
    model = mlp(5)
    x = np.array([[1.0, -0.5, 2.0, 0.3, -1.2], [0.2, 0.4, -0.6, 0.8, 1.0]])
    b = np.array([0.1, 0.0, -0.2, 0.5, 0.0])
    result = explain(model, x, method="shap", target=1, baseline=b, options={"n_samples": 32})
    assert result.metadata["coalitions"] == "exhaustive"
    for row, attr in zip(x, result.attributions, strict=True):
        np.testing.assert_allclose(attr, exact_shapley(model, row, b, 1), atol=1e-5)


def test_kernel_shap_agrees_with_the_shap_package() -> None:
    shap = pytest.importorskip("shap")
    for n_features, n_samples in ((6, 64), (10, 300)):  # every coalition, then sampled
        model = mlp(n_features)
        x = torch.randn(3, n_features, generator=torch.Generator().manual_seed(6)).numpy()
        b = np.full(n_features, 0.1, dtype=np.float32)
        ours = explain(
            model, x, method="shap", target=1, baseline=b, options={"n_samples": n_samples}
        )
        state = np.random.get_state()  # shap samples from numpy's global RNG
        np.random.seed(0)
        try:
            explainer = shap.KernelExplainer(lambda a: outputs(model, a, 1), b[None, :])
            theirs = np.asarray(
                explainer.shap_values(x, nsamples=n_samples, l1_reg=False, silent=True)
            )
        finally:
            np.random.set_state(state)
        assert theirs.shape == ours.attributions.shape
        for a, c in zip(ours.attributions, theirs, strict=True):
            assert rank_correlation(a, c) >= 0.9
        if ours.metadata["coalitions"] == "exhaustive":
            np.testing.assert_allclose(ours.attributions, theirs, atol=1e-5)


def y_3x0_minus_2x1() -> nn.Module:
    """y = 3 x0 - 2 x1 + 0 x2 + 0 x3 + 0 x4 (one output)."""
    layer = nn.Linear(5, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, -2.0, 0.0, 0.0, 0.0]]))
        layer.bias.fill_(0.5)
    return layer


@pytest.mark.parametrize(
    ("method", "backend"),
    [
        ("ig", "inhouse"),
        ("shap", "inhouse"),
        ("lime", "inhouse"),
        ("shap", "captum"),
        ("lime", "captum"),
    ],
)
def test_every_method_ranks_and_signs_a_hand_built_model(method: str, backend: str) -> None:
    x = np.array([[1.0, 1.0, 2.0, -1.0, 0.5], [2.0, 0.5, -1.0, 1.0, 1.0]])
    result = explain(
        y_3x0_minus_2x1(), x, method=method, options={"n_samples": 200}, backend=backend
    )
    for attr in result.attributions:
        assert attr[0] > 0 > attr[1]
        magnitude = np.abs(attr)
        assert magnitude[0] > magnitude[1] > magnitude[2:].max()


def test_our_kernel_shap_agrees_with_captums() -> None:
    model = mlp(10)
    x = torch.randn(4, 10, generator=torch.Generator().manual_seed(6))
    options = {"method": "shap", "n_samples": 300, "perturbations_per_eval": 300}
    ours = explain(model, x, options=options)
    theirs = explain(model, x, options=options, backend="captum")
    assert ours.metadata["backend"] == "inhouse" and theirs.metadata["backend"] == "captum"
    for a, c in zip(ours.attributions, theirs.attributions, strict=True):
        assert rank_correlation(a, c) >= 0.9
    assert np.abs(ours.delta).max() < 1e-9  # the additivity constraint is exact here
    assert np.abs(theirs.delta).max() < 1e-3  # Captum's 10^6 weights get close


def test_our_lime_ranks_a_dominant_feature_first_like_captums() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))
    with torch.no_grad():
        model[0].weight[:, 4] *= 25.0  # feature 4 dominates
    x = np.ones((3, 6))
    ours = explain(model, x, method="lime", target=1, options={"n_samples": 200})
    theirs = explain(
        model, x, method="lime", target=1, options={"n_samples": 200}, backend="captum"
    )
    for result in (ours, theirs):
        assert all(int(np.argmax(np.abs(row))) == 4 for row in result.attributions)
