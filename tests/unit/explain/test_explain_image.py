"""Image data sets (MNIST-shaped, 28x28): heat-map explanations, LIME/SHAP on pixel patches,
global importance as a pixel map, the JSON answer's ``image`` and ``heatmap``."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from sqlalchemy import Engine
from torch import nn

from inhouse.data.store import create_dataset, describe
from inhouse.errors import InvalidInputError
from inhouse.explain import PNG_MAGIC, explain, global_importance
from inhouse.explain.importance import GlobalImportance
from inhouse.explain.patches import image_shape, patch_groups, patch_size, spec_image
from inhouse.explain.request import (
    explanation_png,
    explanation_response,
    run_explanation,
    server_limits,
)
from inhouse.kinds import build_model
from inhouse.kinds.tabular.training import layout_image, mlp_spec
from inhouse.models import MLPSpec
from inhouse.schema import get_engine

SHAPE = (28, 28)
NAMES = [f"pixel_{r}_{c}" for r in range(28) for c in range(28)]
CLASSES = [str(d) for d in range(10)]


def digit_images(n: int, seed: int = 0) -> np.ndarray:
    """Black images (0) with a bright bar in the middle of random rows, like MNIST's strokes."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 28, 28), dtype=np.float32)
    for i in range(n):
        top = int(rng.integers(4, 18))
        x[i, top : top + 6, 10:18] = rng.uniform(128, 255, (6, 8))
    return x.reshape(n, 784)


@pytest.fixture(scope="module")
def linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(784, 10)).eval()


@pytest.fixture(scope="module")
def mnist_mlp() -> nn.Module:
    torch.manual_seed(0)
    spec = MLPSpec(input_dim=784, hidden=[64, 64], num_classes=10, feature_names=NAMES)
    return build_model(spec.model_dump()).eval()


def test_the_image_shape_comes_from_the_spec_or_the_pixel_names() -> None:
    assert image_shape(NAMES, 784) == SHAPE
    assert image_shape([f"pixel_{r}_{c}" for r in range(8) for c in range(8)], 64) == (8, 8)
    assert image_shape([], 64) == (8, 8)  # unnamed 64 features: digits, as before
    assert image_shape([f"f{i}" for i in range(784)], 784) is None
    assert image_shape(list(reversed(NAMES)), 784) is None  # not row-major
    assert image_shape([f"f{i}" for i in range(784)], 784, {"height": 28, "width": 28}) == SHAPE
    assert image_shape(NAMES, 784, {"height": 7, "width": 7}) == SHAPE  # does not fit: names
    assert spec_image({"input_dim": 30, "feature_names": [f"f{i}" for i in range(30)]}) is None
    assert patch_size(SHAPE) == 4 and int(patch_groups(SHAPE, 4).max()) + 1 == 49
    assert patch_size((8, 8)) == 1  # digits keep single pixels
    assert patch_groups((5, 5), 2).reshape(5, 5)[4].tolist() == [6, 6, 7, 7, 8]


def test_shap_on_patches_is_exact_for_a_linear_model(linear: nn.Module) -> None:
    x = torch.from_numpy(digit_images(3))
    result = explain(linear, x, method="shap", target=4, image=SHAPE)
    assert result.image == SHAPE and result.metadata["patch_size"] == 4
    assert result.metadata["interpretable_features"] == "49 patches of 4x4 pixels"
    assert np.abs(result.delta).max() < 1e-3  # additive: sums to f(x) - f(0)
    # a patch's Shapley value under a linear model is its pixels' w * x, shared by |x - 0|
    groups = patch_groups(SHAPE, 4).numpy()
    w = linear[0].weight.detach().double().numpy()[4]
    for row in range(3):
        pixels = x[row].double().numpy()
        wanted = np.bincount(groups, weights=w * pixels, minlength=49)
        got = np.bincount(groups, weights=result.attributions[row], minlength=49)
        np.testing.assert_allclose(got, wanted, atol=1e-3)
        assert np.all(result.attributions[row][pixels == 0] == 0)  # black pixels: nothing
    assert result.heatmap(0).shape == SHAPE


def test_lime_on_patches_maps_back_to_pixels(linear: nn.Module) -> None:
    x = digit_images(2)
    grouped = explain(linear, x, method="lime", target=1, image=SHAPE)
    single = explain(linear, x, method="lime", target=1)
    assert grouped.image == SHAPE and single.image is None
    assert grouped.attributions.shape == single.attributions.shape == (2, 784)
    assert np.all(grouped.attributions[x == 0] == 0)
    pixel = explain(linear, x, method="lime", target=1, image=SHAPE, options={"patch_size": 1})
    np.testing.assert_array_equal(pixel.attributions, single.attributions)  # 1: pixels alone
    with pytest.raises(InvalidInputError, match="height x width"):
        explain(linear, x, method="ig", image=(27, 28))


def test_explanations_of_an_mnist_mlp_take_well_under_a_second_per_row(
    mnist_mlp: nn.Module,
) -> None:
    x = digit_images(4)
    for method in ("ig", "lime", "shap"):
        started = time.perf_counter()
        result = explain(mnist_mlp, x, method=method, image=SHAPE)
        per_row = (time.perf_counter() - started) / 4
        assert per_row < 1.0, (method, per_row)
        assert result.heatmap(3).shape == SHAPE


def test_the_json_answer_carries_a_height_by_width_heat_map(
    mnist_mlp: nn.Module, linear: nn.Module
) -> None:
    x = digit_images(2)
    found = run_explanation(
        mnist_mlp,
        x,
        method="shap",
        target=None,
        options={"n_samples": 100},
        feature_names=NAMES,
        limits=server_limits(),
        image=SHAPE,
    )
    out = json.loads(json.dumps(explanation_response(found, model="m", version=1, class_names=[])))
    assert out["image"] == {"height": 28, "width": 28}
    assert out["metadata"]["patch_size"] == 4
    heat = np.asarray(out["explanations"][1]["heatmap"])
    assert heat.shape == SHAPE
    np.testing.assert_allclose(heat.ravel(), found.attributions[1], rtol=1e-5, atol=1e-9)
    assert len(out["explanations"][1]["attributions"]) == 784  # the flat {pixel: value} too
    plain = run_explanation(
        nn.Sequential(nn.Linear(3, 2)),
        np.ones((1, 3), dtype=np.float32),
        method="shap",
        target=None,
        options={},
        feature_names=["a", "b", "c"],
        limits=server_limits(),
    )
    table = explanation_response(plain, model="t", version=1, class_names=[])
    assert "image" not in table and "heatmap" not in table["explanations"][0]
    assert "patch_size" not in table["metadata"]  # a tabular answer is unchanged
    png = explanation_png(found, x, class_names=CLASSES)
    assert png.startswith(PNG_MAGIC) and int.from_bytes(png[16:20], "big") == 720


def test_global_importance_of_an_image_is_a_pixel_map(mnist_mlp: nn.Module) -> None:
    found = global_importance(mnist_mlp, digit_images(20), max_rows=8, image=SHAPE)
    assert found.image == SHAPE and found.heatmap().shape == SHAPE
    assert found.metadata["patch_size"] == 4
    back = GlobalImportance.from_dict(json.loads(json.dumps(found.to_dict())))
    assert back.image == SHAPE and np.array_equal(back.importance, found.importance)
    assert "image" not in global_importance(nn.Linear(3, 2), np.ones((4, 3))).to_dict()


@pytest.fixture
def engine(tmp_path: object) -> Engine:
    return get_engine(f"sqlite:///{tmp_path}/inhouse.db")


def test_a_spec_carries_the_image_of_its_data_sets_layout(engine: Engine) -> None:
    layout = {"dtype": "uint8", "scale": 1.0, "image": {"height": 28, "width": 28}}
    create_dataset(engine, name="pixels", feature_names=NAMES, class_names=CLASSES, layout=layout)
    create_dataset(engine, name="table", feature_names=["a", "b"], class_names=["x", "y"])
    image = layout_image(engine, "pixels")
    assert image == {"height": 28, "width": 28} and layout_image(engine, "table") is None
    spec = mlp_spec(describe(engine, "pixels"), [64, 64], image)
    assert spec["image"] == image and spec_image(spec) == SHAPE
    build_model(spec)  # a spec with an image still builds
    assert "image" not in mlp_spec(describe(engine, "table"), [8], None)  # unchanged


def test_the_demo_summary_names_the_heat_map() -> None:
    from inhouse.cli.demo_explain import explanation_line

    found = {"method": "KernelShap", "predicted": "7", "actual": 7, "ms": 12.0, "png": "x.png"}
    line = explanation_line(found | {"image": {"height": 28, "width": 28}, "patch_size": 4})
    assert "KernelShap 28x28 heat map (4x4 pixel patches) of test row 0" in line
    assert "bar chart" in explanation_line(found | {"image": None, "patch_size": None})
