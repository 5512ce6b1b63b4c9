"""PNG bar charts and heat maps, and the top-k text for the command line."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from torch import nn

from inhouse.errors import InvalidInputError
from inhouse.explain import (
    PNG_MAGIC,
    Explanation,
    GlobalImportance,
    bar_chart_png,
    explain,
    format_top_features,
    heatmap_png,
    pixel_feature_names,
    top_features,
)


def decode(png: bytes) -> np.ndarray:
    assert png.startswith(PNG_MAGIC)
    image = imread(io.BytesIO(png), format="png")
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    return image


@pytest.fixture(scope="module")
def digits_explanation() -> Explanation:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    x = torch.rand(2, 64) * 16
    return explain(model, x, feature_names=pixel_feature_names((8, 8)), options={"n_steps": 16})


def test_top_features_are_sorted_by_magnitude(digits_explanation: Explanation) -> None:
    top = top_features(digits_explanation, 5, instance=1)
    assert len(top) == 5
    magnitudes = [abs(v) for _, v in top]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert top[0][0].startswith("pixel_r")
    text = format_top_features(digits_explanation, 3)
    assert len(text.splitlines()) == 3


def test_bar_chart_png_decodes(digits_explanation: Explanation) -> None:
    decode(bar_chart_png(digits_explanation, top_k=8, instance=1))
    global_ = GlobalImportance(["a", "b", "c"], np.array([0.2, 0.5, 0.1]), 10)
    decode(bar_chart_png(global_, title="v2"))


def test_heatmap_png_decodes(digits_explanation: Explanation) -> None:
    decode(heatmap_png(digits_explanation.attributions[0], shape=(8, 8)))
    decode(heatmap_png(digits_explanation.attributions[0], image=np.arange(64.0), title="digit"))
    decode(heatmap_png(np.zeros(64)))  # all-zero attributions still draw


def test_plot_inputs_are_checked(digits_explanation: Explanation) -> None:
    with pytest.raises(InvalidInputError, match="8x8"):
        heatmap_png(np.ones(30))
    with pytest.raises(InvalidInputError, match="NaN"):
        heatmap_png([np.nan] * 64)
    with pytest.raises(InvalidInputError, match="top_k"):
        bar_chart_png(digits_explanation, top_k=0)
    with pytest.raises(InvalidInputError, match="instance 5"):
        top_features(digits_explanation, instance=5)
