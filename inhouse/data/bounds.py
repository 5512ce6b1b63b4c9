"""Public feature bounds: the data-independent feature scaling DP training needs.

Standardising with the mean and std of private rows would release those statistics
without noise, so a DP run scales each feature by public bounds instead: ``(x - mid) /
half_range``. Bounds come from a JSON file the data owner declares (``{"feature": [lo,
hi]}``) or, for the built-in data sets, from their published documentation (digits:
pixel intensities 0-16; MNIST and Fashion-MNIST: 28x28 pixels 0-255; breast cancer: the
min/max table in scikit-learn's description).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from inhouse.errors import InvalidInputError

_DESCR_ROW = re.compile(
    r"^(?P<name>[a-z ]+) \((?P<kind>mean|standard error|worst)\):\s+"
    r"(?P<lo>[-\d.]+)\s+(?P<hi>[-\d.]+)\s*$"
)


def _breast_cancer_bounds() -> dict[str, tuple[float, float]]:
    from sklearn.datasets import load_breast_cancer

    prefix = {"mean": "mean_{}", "standard error": "{}_error", "worst": "worst_{}"}
    bounds: dict[str, tuple[float, float]] = {}
    for line in str(load_breast_cancer().DESCR).splitlines():
        match = _DESCR_ROW.match(line.strip())
        if match:
            name = prefix[match["kind"]].format(match["name"]).replace(" ", "_")
            bounds[name] = (float(match["lo"]), float(match["hi"]))
    return bounds


def _pixels(side: int, hi: float) -> dict[str, tuple[float, float]]:
    return {f"pixel_{r}_{c}": (0.0, hi) for r in range(side) for c in range(side)}


def _digits_bounds() -> dict[str, tuple[float, float]]:
    return _pixels(8, 16.0)


def _image_bounds() -> dict[str, tuple[float, float]]:
    return _pixels(28, 255.0)


BUILTIN_BOUNDS = {
    "digits": _digits_bounds,
    "breast_cancer": _breast_cancer_bounds,
    "mnist": _image_bounds,
    "fashion_mnist": _image_bounds,
}


def _read_file(path: Path) -> dict[str, tuple[float, float]]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read feature bounds {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidInputError(f'{path}: expected {{"feature": [lo, hi], ...}}')
    bounds: dict[str, tuple[float, float]] = {}
    for name, pair in raw.items():
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in pair)
            or pair[0] > pair[1]
        ):
            raise InvalidInputError(f"{path}: bounds of {name!r} must be [lo, hi] with lo <= hi")
        bounds[str(name)] = (float(pair[0]), float(pair[1]))
    return bounds


def public_bounds(
    *, dataset: str, feature_names: list[str], bounds_file: Path | None = None
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Per-feature (lo, hi) tensors and where they came from; refuses missing features."""
    if bounds_file is not None:
        table, source = _read_file(bounds_file), f"public bounds from {bounds_file.name}"
    elif dataset in BUILTIN_BOUNDS:
        table, source = BUILTIN_BOUNDS[dataset](), f"published bounds of {dataset}"
    else:
        raise InvalidInputError(
            f"DP training on {dataset!r} needs public feature bounds (they must not come from "
            'the private rows): pass --dp-bounds FILE with {"feature": [lo, hi], ...}'
        )
    missing = [name for name in feature_names if name not in table]
    if missing:
        raise InvalidInputError(
            f"feature bounds are missing for {len(missing)} feature(s): {', '.join(missing[:5])}"
        )
    lo = torch.tensor([table[name][0] for name in feature_names])
    hi = torch.tensor([table[name][1] for name in feature_names])
    return lo, hi, source
