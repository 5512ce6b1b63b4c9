"""Reading a data set's rows into tensors: a window of ``seq`` values, a split, a shard.

Own tables are read by one query through the driver's cursor and their packed features
decoded at once (:mod:`inhouse.data.packed`); a registered table is read in place
(:mod:`inhouse.data.external_read`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Select, Table, select

from inhouse.data.packed import Packing, read_features
from inhouse.data.rows import Rows
from inhouse.data.store import get_dataset
from inhouse.data.table import rows_table
from inhouse.errors import InvalidInputError


def in_window(
    query: Select[Any],
    table: Table,
    *,
    split: str | None,
    after_id: int | None,
    up_to_id: int | None,
) -> Select[Any]:
    """``query`` restricted to sealed rows with ``after_id < seq <= up_to_id`` (both optional:
    watermark values, :mod:`inhouse.data.seal`) and ``split``, ordered by ``seq``."""
    if split is not None:
        query = query.where(table.c.split == split)
    query = query.where(table.c.seq.is_not(None))
    if after_id is not None:
        query = query.where(table.c.seq > after_id)
    if up_to_id is not None:
        query = query.where(table.c.seq <= up_to_id)
    return query.order_by(table.c.seq)


def read_rows(
    engine: Engine,
    name: str,
    *,
    split: str | None = None,
    after_id: int | None = None,
    up_to_id: int | None = None,
    shard: tuple[int, int] | None = None,
) -> Rows:
    """Read rows with ``after_id < seq <= up_to_id`` (both optional), ordered by ``seq``;
    a registered table is read in place (:mod:`inhouse.data.external`).

    ``shard=(rank, world)`` reads only the rows with ``seq % world == rank``: the ``world``
    shards are disjoint and together cover the rows (one per DDP worker).
    """
    import torch

    from inhouse.data.packed import has_packed

    record = get_dataset(engine, name)
    if record.source is not None:
        from inhouse.data.external_read import read_external

        return read_external(
            engine, record, split=split, after_id=after_id, up_to_id=up_to_id, shard=shard
        )
    if record.kind != "tabular":
        raise InvalidInputError(
            f"data set {name!r} holds {record.kind} rows; read it with "
            "inhouse.data.text_import.read_text_rows"
        )
    table = rows_table(name)
    packing = Packing.of(record.layout, record.n_features)
    with engine.connect() as conn:
        query = in_window(
            select(),
            table,
            split=split,
            after_id=after_id,
            up_to_id=up_to_id,
        )
        if shard is not None:
            rank, world = shard
            if not (isinstance(world, int) and world >= 1 and 0 <= rank < world):
                raise InvalidInputError("shard must be (rank, world) with 0 <= rank < world")
            if world > 1:
                query = query.where(table.c.seq % world == rank)
        packed = has_packed(conn, table)
        ids, labels, x = read_features(conn, table, packing, query, packed=packed)
    return Rows(x=torch.from_numpy(x), y=torch.from_numpy(labels), ids=torch.from_numpy(ids))
