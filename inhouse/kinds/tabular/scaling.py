"""How the MLP's first layer scales an image data set's pixels: by their public range to
[0, 1], in DP and non-DP runs alike.

Per-pixel statistics suit tabular columns but not images: a border pixel that is almost always
0 gets a tiny standard deviation and its rare strokes are blown up (the seed's MNIST MLP loses
0.4 points that way), and DP may not use private statistics at all. Intensities scaled by
their public range keep the background at 0, which is also what DP-SGD's clipping needs: a
constant background of -1 would spend most of each row's gradient norm on empty pixels.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from inhouse.data import DatasetInfo
from inhouse.data.bounds import BUILTIN_BOUNDS, public_bounds
from inhouse.data.packed import Packing
from inhouse.data.store import get_dataset


def pixel_bounds(
    engine: Engine, info: DatasetInfo, *, bounds_file: Path | None = None
) -> tuple[list[float], list[float]] | None:
    """Public (lo, hi) per pixel when ``info`` is an image data set (its layout says
    ``image``), else None: the published bounds of a built-in set, a ``--dp-bounds`` file, or
    the byte range of a uint8 layout (``0 .. 255 * scale``)."""
    layout = get_dataset(engine, info.name).layout or {}
    if "image" not in layout:
        return None
    if bounds_file is not None or info.name in BUILTIN_BOUNDS:
        lo, hi, _ = public_bounds(
            dataset=info.name, feature_names=info.feature_names, bounds_file=bounds_file
        )
        return lo.tolist(), hi.tolist()
    packing = Packing.of(layout, info.n_features)
    if packing.dtype != "uint8":
        return None
    return [0.0] * info.n_features, [255.0 * packing.scale] * info.n_features
