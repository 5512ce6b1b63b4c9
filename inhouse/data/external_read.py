"""Reading a registered table in place: rows, counts and stream position by ``seq``.

The user's table is joined with its key map (:func:`inhouse.data.external.key_map`) so rows
are windowed and ordered by ``seq`` like inhouse's own tables; the held-out split is computed
from the key (:func:`test_mask`), the labels mapped to class indices by the source's
``label_values``. :func:`inhouse.data.reading.read_rows`, ``describe`` and
:func:`inhouse.data.stream.position` dispatch here on ``DatasetRecord.source``, so training,
retraining and the coordinator never branch on where a data set lives.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Engine, Select, func, select

from inhouse.data.external import key_map, seal_registered, source_table
from inhouse.data.table import DatasetRecord
from inhouse.errors import InvalidInputError

if TYPE_CHECKING:
    from inhouse.data.rows import Rows


def test_mask(keys: np.ndarray, fraction: float) -> np.ndarray:
    """Which keys are held out: ``splitmix64(key) / 2**64 < fraction`` (fixed per key)."""
    with np.errstate(over="ignore"):
        z = np.asarray(keys, dtype=np.int64).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return np.asarray((z >> np.uint64(11)).astype(np.float64) / float(2**53) < fraction)


def _joined(record: DatasetRecord, names: list[str]) -> tuple[Select[Any], Any]:
    """``seq``, the key (as ``_key``) and the columns ``names`` of the table joined with its
    key map (one FROM: the columns must come from the same table handle)."""
    source = dict(record.source or {})
    src, keys = source_table(source), key_map(record.name)
    query = select(keys.c.seq, src.c[source["key"]].label("_key"), *[src.c[n] for n in names])
    query = query.join_from(src, keys, keys.c.key == src.c[source["key"]])
    return query, keys


def _window(query: Select[Any], keys: Any, after_id: int | None, up_to_id: int | None) -> Any:
    if after_id is not None:
        query = query.where(keys.c.seq > after_id)
    if up_to_id is not None:
        query = query.where(keys.c.seq <= up_to_id)
    return query.order_by(keys.c.seq)


def _split_of(source: Mapping[str, Any], key_values: np.ndarray, split: str | None) -> np.ndarray:
    test = test_mask(key_values, float(source.get("test_fraction", 0.2)))
    if split is None:
        return np.ones(len(key_values), dtype=bool)
    if split not in ("train", "test"):
        raise InvalidInputError(f"split must be 'train' or 'test', not {split!r}")
    return test if split == "test" else ~test


def read_external(
    engine: Engine,
    record: DatasetRecord,
    *,
    split: str | None,
    after_id: int | None,
    up_to_id: int | None,
    shard: tuple[int, int] | None = None,
) -> Rows:
    """The registered table's rows with ``after_id < seq <= up_to_id``, as tensors; with
    ``shard=(rank, world)`` only the rows with ``seq % world == rank``."""
    import torch

    from inhouse.data.rows import Rows

    source = dict(record.source or {})
    query, keys = _joined(record, [source["label"], *source["features"]])
    with engine.connect() as conn:
        result = conn.execute(_window(query, keys, after_id, up_to_id)).all()
    seqs = np.array([r[0] for r in result], dtype=np.int64)
    key_values = np.array([r[1] for r in result], dtype=np.int64)
    keep = _split_of(source, key_values, split)
    if shard is not None:
        rank, world = shard
        keep &= seqs % world == rank
    chosen = [r for r, k in zip(result, keep, strict=True) if k]
    index = {v: i for i, v in enumerate(source["label_values"])}
    where = source["table"]
    labels = []
    for r in chosen:
        if r[2] not in index:
            raise InvalidInputError(
                f"table {where!r} row key {r[1]}: column {source['label']!r} holds {r[2]!r}, "
                f"not a registered class"
            )
        labels.append(index[r[2]])
    try:
        x = np.array([r[3:] for r in chosen], dtype=np.float32)
    except (TypeError, ValueError):
        bad = next(r for r in chosen if any(v is None for v in r[3:]))
        column = source["features"][[v is None for v in bad[3:]].index(True)]
        raise InvalidInputError(
            f"table {where!r} row key {bad[1]}: column {column!r} is null or not a number"
        ) from None
    width = len(source["features"])
    return Rows(
        x=torch.from_numpy(x.reshape(-1, width)),
        y=torch.tensor(labels, dtype=torch.int64),
        ids=torch.from_numpy(seqs[keep]),
    )


def _keys(engine: Engine, record: DatasetRecord, after_id: int | None) -> np.ndarray:
    query, keys = _joined(record, [])
    with engine.connect() as conn:
        rows = conn.execute(_window(query, keys, after_id, None)).all()
    return np.array([(r[0], r[1]) for r in rows], dtype=np.int64).reshape(-1, 2)


def describe_external(
    engine: Engine, record: DatasetRecord
) -> tuple[int | None, int | None, int, int]:
    """(first seq, last seq, rows, test rows) of a registered table, after sealing new keys."""
    source = dict(record.source or {})
    seal_registered(engine, record.name, source)
    pairs = _keys(engine, record, None)
    if not len(pairs):
        return None, None, 0, 0
    test = int(test_mask(pairs[:, 1], float(source.get("test_fraction", 0.2))).sum())
    return int(pairs[:, 0].min()), int(pairs[:, 0].max()), len(pairs), test


def position_external(engine: Engine, record: DatasetRecord, *, after_id: int) -> tuple[int, int]:
    """(newest seq, training rows above ``after_id``) of a registered table."""
    source = dict(record.source or {})
    seal_registered(engine, record.name, source)
    keys = key_map(record.name)
    with engine.connect() as conn:
        newest = conn.execute(select(func.max(keys.c.seq))).scalar()
    pairs = _keys(engine, record, after_id)
    fresh = int((~test_mask(pairs[:, 1], float(source.get("test_fraction", 0.2)))).sum())
    return int(newest or 0), fresh


def window_rows(
    engine: Engine, record: DatasetRecord, *, after: int, up_to: int
) -> Iterator[Sequence[Any]]:
    """The registered table's used columns for ``after < seq <= up_to``, ``seq`` first."""
    source = dict(record.source or {})
    names = [source["label"], *source["features"]] + ([source["time"]] if source["time"] else [])
    query, keys = _joined(record, list(dict.fromkeys(names)))
    query = _window(query, keys, after, up_to).execution_options(yield_per=20_000)
    with engine.connect() as conn:
        yield from conn.execute(query).tuples()
