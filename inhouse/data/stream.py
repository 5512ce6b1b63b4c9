"""Reading a data set as a stream: where it is, and what arrived after a watermark.

Rows get monotonically increasing ids (never reused), whether ``inhouse data append`` or a
plain SQL ``INSERT`` from another system wrote them, so "everything after the last id I
consumed" is exact. The coordinator polls these (PostgreSQL LISTEN/NOTIFY would save the
polls, but one indexed ``max(id)`` every few seconds costs nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from inhouse.data.store import get_dataset
from inhouse.data.table import rows_table


@dataclass(frozen=True)
class StreamPosition:
    """The newest row id of any split, and how many training rows lie above a watermark."""

    max_row_id: int
    new_train_rows: int


def position(engine: Engine, dataset: str, *, after_id: int) -> StreamPosition:
    """Where the stream of ``dataset`` stands relative to the watermark ``after_id``."""
    get_dataset(engine, dataset)
    table = rows_table(dataset)
    with engine.connect() as conn:
        newest = conn.execute(select(func.max(table.c.id))).scalar()
        fresh = conn.execute(
            select(func.count())
            .select_from(table)
            .where(table.c.id > after_id, table.c.split == "train")
        ).scalar_one()
    return StreamPosition(max_row_id=int(newest or 0), new_train_rows=int(fresh))
