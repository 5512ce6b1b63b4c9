"""Simulated new rows for demos, benchmarks and tests: noisy copies of a data set's original
training rows, appended like any other stream (``inhouse data append`` or a SQL INSERT)."""

from __future__ import annotations

import torch
from sqlalchemy import Engine

from inhouse.data.packed import Packing
from inhouse.data.reading import read_rows
from inhouse.data.store import append_rows, get_dataset


def append_noisy_copies(
    engine: Engine,
    dataset: str,
    count: int,
    *,
    seed: int = 1,
    source_up_to_id: int | None = None,
    wrong_labels: bool = False,
) -> tuple[int, int]:
    """Append ``count`` copies of random training rows (ids up to ``source_up_to_id``, default
    all) with unit Gaussian noise, clipped to each feature's range there and rounded to a uint8
    layout's grid (labels made always wrong if asked); returns the first and last new row ids."""
    record = get_dataset(engine, dataset)
    original = read_rows(engine, dataset, split="train", up_to_id=source_up_to_id)
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(0, len(original), (count,), generator=generator)
    low, high = original.x.min(dim=0).values, original.x.max(dim=0).values
    noise = torch.randn(count, original.x.shape[1], generator=generator)
    x = torch.maximum(torch.minimum(original.x[index] + noise, high), low)
    packing = Packing.of(record.layout, record.n_features)
    if packing.dtype == "uint8":  # stored as bytes: values on the layout's grid
        x = torch.round(x / packing.scale) * packing.scale
    y = original.y[index]
    if wrong_labels:
        classes = int(original.y.max()) + 1
        y = (y + torch.randint(1, classes, (count,), generator=generator)) % classes
    return append_rows(engine, dataset, features=x.tolist(), labels=y.tolist())
