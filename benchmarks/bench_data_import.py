"""Tabular data in and out of SQL: our import and load vs pandas on the same database.

- Import: one CSV of 1,000,000 rows x 30 float features and an integer label (200,000 with
  ``--quick``): ``inhouse.data.tabular_import.import_tabular`` (pyarrow parse, packed float32
  rows, ``executemany`` on SQLite, binary ``COPY`` on PostgreSQL, one transaction) vs
  ``pandas.read_csv`` + ``DataFrame.to_sql`` (SQLAlchemy engine, one column per feature).
  Target: ours / pandas <= 1.5.
- Load for training: ``read_rows`` of every row into tensors vs ``pandas.read_sql`` of the
  pandas table. Target: ours / pandas <= 1.0.
- MNIST-sized: 70,000 rows x 784 uint8 features (random pixels; what is read does not depend
  on them) read by ``read_rows``. Target: <= 5 s.

Each on SQLite (a file in a temporary directory) and on PostgreSQL at 127.0.0.1:5432 database
``test`` when it answers (a fresh schema, dropped afterwards). Import is timed once per side
(minutes of baseline); loads are the best of two, alternated.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from inhouse.benchmarks.report import row

NAME = "data_import"
PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
FEATURES = 30
MNIST_ROWS, MNIST_WIDTH = 70_000, 784


def _seconds(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _write_csv(path: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=(rows, FEATURES)), 4)
    columns: dict[str, Any] = {f"f{i}": x[:, i] for i in range(FEATURES)}
    columns["label"] = rng.integers(0, 3, rows)
    pcsv.write_csv(pa.table(columns), path)


@contextlib.contextmanager
def databases(tmp: Path) -> Iterator[list[tuple[str, str]]]:
    """(label, URL) of SQLite (a file in ``tmp``) and, when it answers, a fresh PostgreSQL
    schema, dropped afterwards (also used by ``bench_mnist_load``)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    found = [("SQLite", f"sqlite:///{tmp / 'bench.db'}")]
    schema = f"ih_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_BASE)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        found.append(("PostgreSQL", f"{PG_BASE}?options=-csearch_path%3D{schema}"))
    except OperationalError:
        admin.dispose()
        yield found
        return
    try:
        yield found
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _tabular(label: str, url: str, csv: Path, rows: int) -> list[dict[str, Any]]:
    import pandas as pd
    from sqlalchemy import create_engine

    from inhouse.data import read_rows
    from inhouse.data.tabular_import import import_tabular
    from inhouse.schema import get_engine

    engine, plain = get_engine(url), create_engine(url)
    ours_import = _seconds(lambda: import_tabular(engine, name="bench", uri=str(csv)))

    def pandas_import() -> None:
        pd.read_csv(csv).to_sql("pandas_bench", plain, index=False, chunksize=100_000)

    base_import = _seconds(pandas_import)
    loads: dict[str, list[float]] = {"ours": [], "pandas": []}
    for _ in range(2):
        loads["ours"].append(_seconds(lambda: read_rows(engine, "bench")))
        loads["pandas"].append(_seconds(lambda: pd.read_sql("SELECT * FROM pandas_bench", plain)))
    plain.dispose()
    size = f"{rows:,} rows x {FEATURES} features"
    return [
        row(
            NAME,
            f"import CSV s, {label}",
            ours_import,
            base_import,
            target=("ratio", "<=", 1.5, ""),
            notes=f"{size} ({csv.stat().st_size / 2**20:.0f} MiB CSV): import_tabular vs "
            "pandas.read_csv + DataFrame.to_sql on the same database, once each",
        ),
        row(
            NAME,
            f"load for training s, {label}",
            min(loads["ours"]),
            min(loads["pandas"]),
            target=("ratio", "<=", 1.0, ""),
            notes=f"{size}: read_rows (tensors) vs pandas.read_sql of the pandas table, "
            "best of 2, alternated",
        ),
    ]


def _mnist(label: str, url: str) -> dict[str, Any]:
    from inhouse.data import read_rows
    from inhouse.data.packed import Packing, insert_packed
    from inhouse.data.seal import reserve_seqs
    from inhouse.data.store import create_in
    from inhouse.data.table import rows_table
    from inhouse.schema import get_engine

    engine = get_engine(url)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(MNIST_ROWS, MNIST_WIDTH), dtype=np.uint8)
    layout = {"dtype": "uint8", "scale": 1 / 255}
    packing = Packing.of(layout, MNIST_WIDTH)
    with engine.begin() as conn:
        create_in(
            conn,
            name="mnist_sized",
            feature_names=[f"p{i}" for i in range(MNIST_WIDTH)],
            class_names=[str(d) for d in range(10)],
            layout=layout,
        )
        insert_packed(
            conn,
            rows_table("mnist_sized"),
            blobs=packing.blobs(pixels),
            labels=rng.integers(0, 10, MNIST_ROWS).tolist(),
            splits=["train"] * MNIST_ROWS,
            first_seq=reserve_seqs(conn, "ds_mnist_sized"),
        )
    times = [_seconds(lambda: read_rows(engine, "mnist_sized")) for _ in range(2)]
    return row(
        NAME,
        f"load 70,000 x 784 uint8 s, {label}",
        min(times),
        None,
        target=("ours", "<=", 5.0, "s"),
        notes="MNIST-sized rows stored as uint8 (scale 1/255) read into float32 tensors by "
        "read_rows, best of 2",
    )


def run(quick: bool) -> list[dict[str, Any]]:
    import pandas  # noqa: F401 - imported before timing: both sides start warm
    import torch  # noqa: F401

    rows = 200_000 if quick else 1_000_000
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="inhouse-bench-data-") as tmp:
        csv = Path(tmp) / "tabular.csv"
        _write_csv(csv, rows)
        with databases(Path(tmp)) as found:
            for label, url in found:
                results += _tabular(label, url, csv, rows)
                results.append(_mnist(label, url))
    return results
