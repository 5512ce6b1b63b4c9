"""The v1 ``:explain`` body: strict parsing, 422 with one-line messages (over-limit requests
included), the JSON answer."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from inhouse.errors import InvalidInputError, PayloadTooLargeError
from inhouse.explain import PNG_MAGIC, ExplainOptions, explain, pixel_feature_names
from inhouse.explain.request import (
    ExplainRequestOptions,
    explanation_png,
    explanation_response,
    is_image_model,
    parse_explain,
    run_explanation,
    server_limits,
    training_mean,
)
from inhouse.kinds import build_model
from inhouse.models import MLPSpec

LIMITS = server_limits(max_instances=4)


def body(**extra: Any) -> dict[str, Any]:
    return {"instances": [[1.0, 2, 3.5], [0, 0, 0]], **extra}


def test_a_good_body_parses() -> None:
    x, method, target, options = parse_explain(
        body(method="shap", target=1, options={"n_samples": 50, "seed": None}),
        n_features=3,
        limits=LIMITS,
        n_classes=2,
    )
    assert x.dtype == np.float32 and x.shape == (2, 3)
    assert x[0].tolist() == [1.0, 2.0, 3.5]
    assert (method, target) == ("shap", 1)
    assert options == {"n_samples": 50, "seed": None}  # only what the client set


def test_defaults() -> None:
    _, method, target, options = parse_explain(body(), n_features=3, limits=LIMITS)
    assert (method, target, options) == ("ig", None, {})


def test_request_options_mirror_explain_options() -> None:
    wanted = set(ExplainOptions.model_fields) - {"method"}
    assert set(ExplainRequestOptions.model_fields) == wanted


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"instances": [["a", 1, 2]]}, "instances.0.0"),
        ({"instances": [[True, 1, 2]]}, "valid number"),
        ({"instances": [[1, 2]]}, "list of 3 numbers"),
        ({"instances": [1, 2, 3]}, "valid list"),
        ({"instances": []}, "at least 1"),
        ({"instances": [[1e39, 0, 0]]}, "float32 range"),
        (body(method="deeplift"), "'ig', 'lime' or 'shap'"),
        (body(target=-1), "target"),
        (body(target=2), "target 2 out of range"),
        (body(target="1"), "target"),
        (body(options={"n_steps": 1}), "n_steps"),
        (body(options={"n_steps": "64"}), "n_steps"),
        (body(options={"method": "lime"}), "options.method"),
        (body(options={"baseline": "median"}), "baseline"),
        (body(parameters={}), "parameters"),
        ([[1, 2, 3]], "body"),
    ],
)
def test_bad_bodies_are_422(payload: Any, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment) as info:
        parse_explain(payload, n_features=3, limits=LIMITS, n_classes=2)
    assert info.value.status_code == 422
    assert "\n" not in info.value.message


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"instances": [[0, 0, 0]] * 5}, "too many instances: 5 > limit 4"),
        ({"instances": [["x"]] * 5}, "too many instances: 5"),  # counted before anything else
        (body(options={"n_steps": 5_000}), "n_steps"),
        (body(method="shap", options={"n_samples": 10_000}), "n_samples"),
        (body(method="lime", options={"perturbations_per_eval": 4096}), "perturbations"),
    ],
)
def test_over_limit_bodies_are_422(payload: Any, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment) as info:
        parse_explain(payload, n_features=3, limits=LIMITS)
    assert info.value.status_code == 422
    assert not isinstance(info.value, PayloadTooLargeError)
    assert "\n" not in info.value.message


def test_over_limit_model_rows_are_422() -> None:
    tight = LIMITS.model_copy(update={"max_model_rows": 100})
    payload = body(method="shap", options={"n_samples": 60})  # 2 instances x 60 samples
    with pytest.raises(InvalidInputError, match="model rows") as info:
        parse_explain(payload, n_features=3, limits=tight)
    assert info.value.status_code == 422


def test_run_explanation_over_limits_is_422(mlp: nn.Module) -> None:
    tight = LIMITS.model_copy(update={"max_n_samples": 10})
    with pytest.raises(InvalidInputError, match="n_samples") as info:
        run_explanation(
            mlp,
            np.zeros((1, 4), dtype=np.float32),
            method="lime",
            target=None,
            options={"n_samples": 11},
            feature_names=None,
            limits=tight,
        )
    assert info.value.status_code == 422


def test_server_limits_cap_instances_but_never_raise_them() -> None:
    assert server_limits(max_instances=4).max_instances == 4
    assert server_limits(max_instances=10**6).max_instances == server_limits().max_instances


@pytest.fixture(scope="module")
def mlp() -> nn.Module:
    torch.manual_seed(0)
    model = build_model(MLPSpec(input_dim=4, hidden=[8], num_classes=3).model_dump())
    model[0].mean.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    return model.eval()


def test_response_shape(mlp: nn.Module) -> None:
    x = np.array([[1.0, 0.0, 2.0, 5.0], [0.5, 0.5, 0.5, 0.5]], dtype=np.float32)
    explanation = run_explanation(
        mlp,
        x,
        method="ig",
        target=None,
        options={"n_steps": 32},
        feature_names=["a", "b", "c", "d"],
        limits=LIMITS,
    )
    out = explanation_response(explanation, model="toy", version=3, class_names=["x", "y", "z"])
    json.dumps(out)  # plain JSON
    assert out["model_name"] == "toy" and out["model_version"] == "3"
    assert out["method"] == "ig" and out["delta_kind"] == "completeness"
    assert out["metadata"]["method_name"] == "IntegratedGradients"
    assert len(out["explanations"]) == 2
    first = out["explanations"][0]
    assert set(first) == {
        "prediction",
        "target",
        "probabilities",
        "attributions",
        "baseline",
        "target_output",
        "baseline_output",
        "delta",
    }
    assert first["prediction"]["name"] == "xyz"[first["prediction"]["index"]]
    assert first["target"] == first["prediction"]  # default target: the predicted class
    assert len(first["probabilities"]) == 3 and abs(sum(first["probabilities"]) - 1) < 1e-4
    values = list(first["attributions"].values())
    assert sorted(first["attributions"]) == ["a", "b", "c", "d"]
    assert [abs(v) for v in values] == sorted((abs(v) for v in values), reverse=True)
    assert first["baseline"] == [0.0] * 4
    assert abs(first["delta"]) < 0.05


def test_mean_baseline_is_the_models_training_mean(mlp: nn.Module) -> None:
    assert training_mean(mlp, 4) is not None
    assert training_mean(nn.Linear(4, 2), 4) is None
    explanation = run_explanation(
        mlp,
        np.zeros((1, 4), dtype=np.float32),
        method="shap",
        target=2,
        options={"baseline": "mean", "n_samples": 30},
        feature_names=None,
        limits=LIMITS,
        training_mean_allowed=True,  # as `inhouse explain`; the served route: test_sec_lineage
    )
    assert explanation.baseline_kind == "mean"
    assert explanation.baseline[0].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert explanation.targets == [2]
    with pytest.raises(InvalidInputError, match="training mean"):
        run_explanation(
            nn.Linear(4, 2),
            np.zeros((1, 4), dtype=np.float32),
            method="ig",
            target=None,
            options={"baseline": "mean"},
            feature_names=None,
            limits=LIMITS,
            training_mean_allowed=True,
        )


def test_png_is_a_heat_map_for_digits_and_bars_otherwise(mlp: nn.Module) -> None:
    assert is_image_model(pixel_feature_names((8, 8)), 64)
    assert is_image_model([f"pixel_{r}_{c}" for r in range(8) for c in range(8)], 64)
    assert is_image_model([], 64)
    assert not is_image_model([f"f{i}" for i in range(64)], 64)
    assert not is_image_model([], 30)
    torch.manual_seed(0)
    digits = nn.Sequential(nn.Linear(64, 10))
    x = np.random.default_rng(0).uniform(0, 16, (1, 64)).astype(np.float32)
    heat = explanation_png(
        explain(digits, x, options={"n_steps": 8}), x, class_names=[str(d) for d in range(10)]
    )
    x4 = np.ones((1, 4), dtype=np.float32)
    bars = explanation_png(explain(mlp, x4, options={"n_steps": 8}), x4, class_names=[])
    assert heat.startswith(PNG_MAGIC) and bars.startswith(PNG_MAGIC)
    assert png_width(heat) == 720  # two 3.6-inch panels: the input and its heat map
    assert png_width(bars) == 700  # one 7-inch bar chart


def png_width(png: bytes) -> int:
    return int.from_bytes(png[16:20], "big")  # the IHDR chunk follows the 8-byte signature
