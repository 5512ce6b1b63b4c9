"""Create data sets, append rows and read row ranges into tensors."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select

from inhouse.data.packed import Packing, insert_feature_rows
from inhouse.data.seal import reserve_seqs, seal
from inhouse.data.table import DatasetRecord, rows_table, validate_name
from inhouse.db import session_scope
from inhouse.errors import ConflictError, DatasetNotFoundError, InvalidInputError

MAX_APPEND_ROWS = 1_000_000


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set holds; ``first_id``/``last_id`` are its sealed rows' ``seq`` range
    (``last_id`` is the stream watermark candidate)."""

    name: str
    kind: str
    n_features: int
    feature_names: list[str]
    class_names: list[str]
    rows: int
    train_rows: int
    test_rows: int
    first_id: int | None
    last_id: int | None


def create_dataset(
    engine: Engine,
    *,
    name: str,
    feature_names: Sequence[str],
    class_names: Sequence[str],
    kind: str = "tabular",
    description: str = "",
    initial_rows: Sequence[list[dict[str, object]]] = (),
    layout: Mapping[str, Any] | None = None,
) -> None:
    """Register a data set, create its table and insert ``initial_rows``, all in one transaction.

    ``layout`` says how features are stored (:mod:`inhouse.data.packed`; None: float32).
    Raises ConflictError if it exists. A crash midway leaves no half-made data set.
    """
    with engine.begin() as conn:
        create_in(
            conn,
            name=name,
            feature_names=feature_names,
            class_names=class_names,
            kind=kind,
            description=description,
            layout=layout,
        )
        for rows in initial_rows:
            insert_rows(conn, name, rows)


def create_in(
    conn: Connection,
    *,
    name: str,
    feature_names: Sequence[str],
    class_names: Sequence[str],
    kind: str = "tabular",
    description: str = "",
    layout: Mapping[str, Any] | None = None,
) -> None:
    """:func:`create_dataset`'s catalog entry and table, inside the caller's transaction."""
    validate_name(name)
    if not feature_names and kind == "tabular":
        raise InvalidInputError("a tabular data set needs at least one feature name")
    if len(class_names) < 2:
        raise InvalidInputError("a classification data set needs at least two classes")
    if layout is not None:
        Packing.of(layout, len(feature_names))  # refuses an unknown dtype or a bad scale
    table = rows_table(name)
    if conn.execute(select(DatasetRecord.name).where(DatasetRecord.name == name)).first():
        raise ConflictError(f"data set {name!r} already exists")
    table.create(conn, checkfirst=True)
    conn.execute(
        insert(DatasetRecord),
        {
            "name": name,
            "kind": kind,
            "n_features": len(feature_names),
            "feature_names": list(feature_names),
            "class_names": list(class_names),
            "description": description,
            "layout": dict(layout) if layout is not None else None,
        },
    )


def get_dataset(engine: Engine, name: str) -> DatasetRecord:
    """The catalog entry of ``name``; raises DatasetNotFoundError."""
    validate_name(name)
    with session_scope(engine) as session:
        record = session.get(DatasetRecord, name)
    if record is None:
        raise DatasetNotFoundError(f"data set {name!r} does not exist; run `inhouse data seed`")
    return record


def list_datasets(engine: Engine) -> list[str]:
    with session_scope(engine) as session:
        return list(session.scalars(select(DatasetRecord.name).order_by(DatasetRecord.name)))


def _check_row(i: int, row: Sequence[float], width: int) -> list[float]:
    if len(row) != width:
        raise InvalidInputError(f"row {i}: expected {width} features, got {len(row)}")
    values = [float(v) for v in row]
    if not all(math.isfinite(v) for v in values):
        raise InvalidInputError(f"row {i}: features must be finite numbers (no NaN or Inf)")
    return values


def validate_rows(
    *,
    features: Sequence[Sequence[float]],
    labels: Sequence[int],
    n_features: int,
    n_classes: int,
    split: str = "train",
) -> list[dict[str, object]]:
    """Check rows against a data set's shape; returns them ready to insert."""
    if split not in ("train", "test"):
        raise InvalidInputError(f"split must be 'train' or 'test', not {split!r}")
    if len(features) != len(labels):
        raise InvalidInputError(f"{len(features)} feature rows but {len(labels)} labels")
    if not 0 < len(labels) <= MAX_APPEND_ROWS:
        raise InvalidInputError(f"append 1 to {MAX_APPEND_ROWS} rows at a time")
    rows: list[dict[str, object]] = []
    for i, (row, label) in enumerate(zip(features, labels, strict=True)):
        if not 0 <= int(label) < n_classes:
            raise InvalidInputError(f"row {i}: label {label} outside 0..{n_classes - 1}")
        values = _check_row(i, row, n_features)
        rows.append({"features": values, "label": int(label), "split": split})
    return rows


def insert_rows(conn: Connection, name: str, rows: list[dict[str, object]]) -> tuple[int, int]:
    """Insert validated rows inside the caller's transaction, numbered in commit order
    (:func:`inhouse.data.seal.reserve_seqs`); returns the (first, last) ``seq`` they got.

    Tabular rows (with ``features``) are stored packed as the data set's layout says.
    """
    table = rows_table(name)
    first = reserve_seqs(conn, table.name)
    if rows and all("features" in row for row in rows):
        layout, width = conn.execute(
            select(DatasetRecord.layout, DatasetRecord.n_features).where(DatasetRecord.name == name)
        ).one()
        insert_feature_rows(conn, table, Packing.of(layout, width), rows, first_seq=first)
    else:
        conn.execute(insert(table), [{**row, "seq": first + i} for i, row in enumerate(rows)])
    return first, first + len(rows) - 1


def append_rows(
    engine: Engine,
    name: str,
    *,
    features: Sequence[Sequence[float]],
    labels: Sequence[int],
    split: str = "train",
) -> tuple[int, int]:
    """Append rows in one transaction; returns the (first, last) ``seq`` written."""
    record = get_dataset(engine, name)
    if record.source is not None:
        raise InvalidInputError(
            f"data set {name!r} is the registered table {record.source.get('table')!r}, read "
            "in place: append rows to that table itself"
        )
    rows = validate_rows(
        features=features,
        labels=labels,
        n_features=record.n_features,
        n_classes=len(record.class_names),
        split=split,
    )
    with engine.begin() as conn:
        return insert_rows(conn, name, rows)


def _counts(engine: Engine, name: str) -> tuple[int | None, int | None, int, int]:
    """(first seq, last seq, rows, test rows) of an own table, after sealing new rows."""
    table = rows_table(name)
    seal(engine, name)
    sealed = table.c.seq.is_not(None)
    with engine.connect() as conn:
        first, last, total = conn.execute(
            select(func.min(table.c.seq), func.max(table.c.seq), func.count()).where(sealed)
        ).one()
        test = conn.execute(
            select(func.count()).select_from(table).where(sealed, table.c.split == "test")
        ).scalar_one()
    return first, last, int(total), int(test)


def describe(engine: Engine, name: str) -> DatasetInfo:
    """Counts and ``seq`` range of a data set's sealed rows (sealing any new ones first)."""
    record = get_dataset(engine, name)
    if record.source is not None:
        from inhouse.data.external_read import describe_external

        first, last, total, test = describe_external(engine, record)
    else:
        first, last, total, test = _counts(engine, name)
    return DatasetInfo(
        name=record.name,
        kind=record.kind,
        n_features=record.n_features,
        feature_names=list(record.feature_names),
        class_names=list(record.class_names),
        rows=int(total),
        train_rows=int(total) - int(test),
        test_rows=int(test),
        first_id=first,
        last_id=last,
    )
