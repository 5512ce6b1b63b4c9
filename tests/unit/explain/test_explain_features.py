"""Feature names of the shipped data sets."""

from __future__ import annotations

import pytest

from inhouse.errors import DatasetNotFoundError
from inhouse.explain import BREAST_CANCER_FEATURES, dataset_feature_names, pixel_feature_names


def test_breast_cancer_names_match_scikit_learn() -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    assert list(BREAST_CANCER_FEATURES) == list(datasets.load_breast_cancer().feature_names)
    assert dataset_feature_names("breast_cancer")[0] == "mean radius"


def test_digits_names_are_row_major_pixels() -> None:
    names = dataset_feature_names("digits")
    assert len(names) == 64
    assert names[:2] == ["pixel_r0_c0", "pixel_r0_c1"]
    assert names[8] == "pixel_r1_c0"
    assert pixel_feature_names((2, 3))[-1] == "pixel_r1_c2"


def test_unknown_data_set() -> None:
    with pytest.raises(DatasetNotFoundError, match="known"):
        dataset_feature_names("iris")
