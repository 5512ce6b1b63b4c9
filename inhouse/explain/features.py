"""Feature names for the shipped tabular data sets, so explanations speak the domain's words.

The names are written out here (they are those of scikit-learn's bundled copies) so that a serving
replica can name features without importing scikit-learn.
"""

from __future__ import annotations

from inhouse.errors import DatasetNotFoundError, InvalidInputError

_CELL_NUCLEUS = (
    "radius",
    "texture",
    "perimeter",
    "area",
    "smoothness",
    "compactness",
    "concavity",
    "concave points",
    "symmetry",
    "fractal dimension",
)

BREAST_CANCER_FEATURES: tuple[str, ...] = (
    tuple(f"mean {n}" for n in _CELL_NUCLEUS)
    + tuple(f"{n} error" for n in _CELL_NUCLEUS)
    + tuple(f"worst {n}" for n in _CELL_NUCLEUS)
)
"""The 30 clinical features of ``load_breast_cancer``: mean, standard error and worst value."""

DIGITS_SHAPE: tuple[int, int] = (8, 8)


def pixel_feature_names(shape: tuple[int, int] = DIGITS_SHAPE) -> list[str]:
    """Row-major pixel names ``pixel_r{row}_c{col}`` for an image of ``shape``."""
    rows, cols = shape
    if rows < 1 or cols < 1:
        raise InvalidInputError(f"image shape must be positive, got {shape}")
    return [f"pixel_r{r}_c{c}" for r in range(rows) for c in range(cols)]


def dataset_feature_names(name: str) -> list[str]:
    """Feature names of a shipped data set: ``breast_cancer`` (30) or ``digits`` (64 pixels).

    Raises:
        DatasetNotFoundError: the data set is not one of the shipped ones.
    """
    if name == "breast_cancer":
        return list(BREAST_CANCER_FEATURES)
    if name == "digits":
        return pixel_feature_names(DIGITS_SHAPE)
    raise DatasetNotFoundError(
        f"no feature names for data set {name!r}; known: 'breast_cancer', 'digits'"
    )
