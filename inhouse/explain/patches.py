"""Image data sets: their height x width, and the pixel patches LIME and KernelSHAP switch.

A data set whose layout says ``image: {height, width}`` (MNIST: 28 x 28) holds row-major pixels.
Its explanations are heat maps. Integrated Gradients attributes every pixel; LIME and KernelSHAP
on 784 single pixels would need thousands of samples for a stable fit, so their interpretable
features are square patches (superpixels) instead: the smallest patch that leaves at most
:data:`MAX_PATCHES` of them (28 x 28: 4 x 4 pixels, 49 patches; 8 x 8: single pixels). A patch
switched off takes the baseline's pixels (0: MNIST's black background), and its weight is shared
among its pixels in proportion to ``|x - baseline|`` (what switching it off removed), so a
patch map stays additive and follows the strokes of the digit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from inhouse.errors import InvalidInputError

MAX_PATCHES = 64
ImageShape = tuple[int, int]
_PIXEL = re.compile(r"pixel_r?(\d+)_c?(\d+)")
_DEFAULT_NAME = re.compile(r"feature_\d+")  # explain()'s names when the model has none
DIGITS_SHAPE: ImageShape = (8, 8)


def declared_image(value: Any) -> ImageShape | None:
    """``(height, width)`` of a layout's or spec's ``image`` entry, or ``None`` when absent."""
    if not isinstance(value, Mapping):
        return None
    try:
        height, width = int(value["height"]), int(value["width"])
    except (KeyError, TypeError, ValueError):
        return None
    return (height, width) if height >= 1 and width >= 1 else None


def image_shape(
    feature_names: Sequence[str], n_features: int, declared: Any = None
) -> ImageShape | None:
    """The ``(height, width)`` of an image model's input, or ``None`` for other tabular models.

    ``declared`` (a spec's or layout's ``image`` entry) wins when it covers ``n_features``;
    else pixel names ``pixel_{r}_{c}`` that fill a row-major grid (MNIST, digits) give it; a
    model without names and 64 features is taken for the 8 x 8 digits, as before.
    """
    shape = declared_image(declared)
    if shape is not None and shape[0] * shape[1] == n_features:
        return shape
    names = list(feature_names)
    if not names or all(_DEFAULT_NAME.fullmatch(n) for n in names):
        return DIGITS_SHAPE if n_features == math.prod(DIGITS_SHAPE) else None
    if len(names) != n_features:
        return None
    cells = [_PIXEL.fullmatch(n) for n in names]
    if not all(cells):
        return None
    rows = [int(m.group(1)) for m in cells if m]
    cols = [int(m.group(2)) for m in cells if m]
    height, width = max(rows) + 1, max(cols) + 1
    if height * width != n_features:
        return None
    if any(r * width + c != i for i, (r, c) in enumerate(zip(rows, cols, strict=True))):
        return None
    return height, width


def checked_image(image: Any, n_features: int) -> ImageShape | None:
    """``(height, width)`` from ``explain``'s ``image`` argument (a pair or a mapping).

    Raises:
        InvalidInputError: it does not cut ``n_features`` into height x width.
    """
    if image is None:
        return None
    pair = image if isinstance(image, Mapping) else dict(zip(("height", "width"), image))
    shape = declared_image(pair)
    if shape is None or shape[0] * shape[1] != n_features:
        raise InvalidInputError(
            f"image {image!r} does not describe the {n_features} features as height x width"
        )
    return shape


def patches_for(
    shape: ImageShape | None, side: int | None
) -> tuple[torch.Tensor | None, dict[str, Any]]:
    """The patch of each pixel LIME / KernelSHAP switch (``None``: pixels alone), and metadata.

    ``side`` ``None`` takes :func:`patch_size`; no image, no patches.
    """
    if shape is None:
        return None, {}
    side = side if side is not None else patch_size(shape)
    groups = patch_groups(shape, side)
    count = int(groups.max()) + 1
    what = f"{count} patches of {side}x{side} pixels" if side > 1 else f"{count} single pixels"
    params = {"patch_size": side, "interpretable_features": what}
    return (None if side == 1 else groups), params


def spec_image(spec: Mapping[str, Any]) -> ImageShape | None:
    """A version's image ``(height, width)``: its spec's ``image`` entry (from the data set's
    layout), else its pixel feature names (``pixel_{r}_{c}``); ``None`` for other models."""
    names = [str(n) for n in spec.get("feature_names") or []]
    return image_shape(names, int(spec["input_dim"]), spec.get("image"))


def patch_size(shape: ImageShape, max_patches: int = MAX_PATCHES) -> int:
    """The smallest square patch side that cuts ``shape`` into at most ``max_patches`` patches."""
    height, width = shape
    side = 1
    while math.ceil(height / side) * math.ceil(width / side) > max_patches:
        side += 1
    return side


def patch_groups(shape: ImageShape, side: int) -> torch.Tensor:
    """The patch index of every pixel (row-major), patches numbered row-major too."""
    height, width = shape
    if side < 1:
        raise InvalidInputError(f"patch size must be >= 1, got {side}")
    across = math.ceil(width / side)
    rows = torch.arange(height).unsqueeze(1) // side
    cols = torch.arange(width).unsqueeze(0) // side
    return (rows * across + cols).reshape(-1)


def group_varying(
    inputs: torch.Tensor, baselines: torch.Tensor, groups: torch.Tensor
) -> torch.Tensor:
    """(instances, groups) booleans: a group varies when any of its pixels differs from the
    baseline (a group that does not is a dummy player, held at 0)."""
    n_rows = int(inputs.shape[0])
    differs = (inputs.reshape(n_rows, -1) != baselines.reshape(n_rows, -1)).cpu().double()
    one_hot = torch.nn.functional.one_hot(groups, int(groups.max()) + 1).double()
    return (differs @ one_hot) > 0


def spread(
    group_attributions: torch.Tensor,
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    groups: torch.Tensor,
) -> torch.Tensor:
    """Pixel attributions from group ones: each group's weight shared among its pixels in
    proportion to ``|x - baseline|``; (instances, pixels) float64, summing to the groups'."""
    n_rows = int(inputs.shape[0])
    moved = (inputs.reshape(n_rows, -1) - baselines.reshape(n_rows, -1)).abs().cpu().double()
    one_hot = torch.nn.functional.one_hot(groups, int(group_attributions.shape[1])).double()
    totals = (moved @ one_hot)[:, groups]
    share = torch.where(totals > 0, moved / totals.clamp_min(1e-300), torch.zeros_like(moved))
    result: torch.Tensor = group_attributions.double()[:, groups] * share
    return result
