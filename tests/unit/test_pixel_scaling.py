"""An image data set's pixels are scaled by their public range to [0, 1] (DP or not): the
bounds come from the built-in table, a --dp-bounds file or a uint8 layout; tabular sets get
none (they standardise by statistics, or by public bounds to [-1, 1] under DP)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from inhouse.data import describe
from inhouse.data.store import create_dataset
from inhouse.kinds.tabular.scaling import pixel_bounds
from inhouse.models.mlp import Standardize
from inhouse.schema import get_engine


def _dataset(url: str, name: str, layout: dict[str, object] | None) -> None:
    rows = [{"features": [0.0, 1.0, 2.0, 3.0], "label": i % 2, "split": "train"} for i in range(4)]
    create_dataset(
        get_engine(url), name=name, feature_names=["a", "b", "c", "d"], class_names=["x", "y"],
        initial_rows=[rows], layout=layout,
    )  # fmt: skip


def test_pixel_bounds_come_from_the_layout_a_file_or_nowhere(
    sqlite_url: str, tmp_path: Path
) -> None:
    engine = get_engine(sqlite_url)
    image = {"dtype": "uint8", "scale": 0.5, "image": {"height": 2, "width": 2}}
    _dataset(sqlite_url, "tiles", image)
    _dataset(sqlite_url, "table", None)
    assert pixel_bounds(engine, describe(engine, "tiles")) == ([0.0] * 4, [127.5] * 4)
    assert pixel_bounds(engine, describe(engine, "table")) is None
    declared = tmp_path / "bounds.json"
    declared.write_text(json.dumps({name: [0, 10] for name in "abcd"}))
    lo, hi = pixel_bounds(engine, describe(engine, "tiles"), bounds_file=declared)  # type: ignore[misc]
    assert (lo, hi) == ([0.0] * 4, [10.0] * 4)


def test_zero_based_bounds_keep_the_background_at_zero() -> None:
    layer = Standardize(3)
    lo, hi = torch.zeros(3), torch.full((3,), 255.0)
    layer.set_bounds(lo, hi, zero_based=True)
    assert torch.allclose(layer(torch.tensor([[0.0, 127.5, 255.0]])), torch.tensor([[0, 0.5, 1]]))
    layer.set_bounds(lo, hi)  # tabular DP: [-1, 1]
    assert torch.allclose(layer(torch.tensor([[0.0, 127.5, 255.0]])), torch.tensor([[-1, 0, 1.0]]))


def test_simulated_rows_of_a_uint8_set_stay_on_its_grid(sqlite_url: str) -> None:
    from inhouse.data import read_rows
    from inhouse.data.simulate import append_noisy_copies

    engine = get_engine(sqlite_url)
    _dataset(
        sqlite_url, "tiles", {"dtype": "uint8", "scale": 0.5, "image": {"height": 2, "width": 2}}
    )
    first, last = append_noisy_copies(engine, "tiles", 20, seed=1)
    new = read_rows(engine, "tiles", split="train", after_id=first - 1)
    assert len(new) == 20 and last == first + 19
    assert torch.equal(new.x * 2, torch.round(new.x * 2))  # multiples of the 0.5 scale
