"""Reading a data set as a stream: where it is, and what arrived after a watermark.

The stream counts in ``seq``, each row's place in commit order (:mod:`inhouse.data.seal`),
whether ``inhouse data append`` or a plain SQL ``INSERT`` from another system wrote it, and for
a registered table (:mod:`inhouse.data.external`) the order its keys were first seen in. A row
whose transaction commits after one with a higher id gets a ``seq`` above every watermark
already handed out, so "everything after the last ``seq`` I consumed" is exact. The coordinator
polls this (one indexed probe for unsealed rows, then an indexed ``max(seq)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from inhouse.data.seal import seal
from inhouse.data.store import get_dataset
from inhouse.data.table import rows_table


@dataclass(frozen=True)
class StreamPosition:
    """The newest ``seq`` of any split, and how many training rows lie above a watermark."""

    max_row_id: int
    new_train_rows: int


def position(engine: Engine, dataset: str, *, after_id: int) -> StreamPosition:
    """Where the stream of ``dataset`` stands relative to the watermark ``after_id`` (a
    ``seq``), after sealing the rows committed since the last look."""
    record = get_dataset(engine, dataset)
    if record.source is not None:
        from inhouse.data.external_read import position_external

        top, above = position_external(engine, record, after_id=after_id)
        return StreamPosition(max_row_id=top, new_train_rows=above)
    seal(engine, dataset)
    table = rows_table(dataset)
    with engine.connect() as conn:
        newest = conn.execute(select(func.max(table.c.seq))).scalar()
        fresh = conn.execute(
            select(func.count())
            .select_from(table)
            .where(table.c.seq > after_id, table.c.split == "train")
        ).scalar_one()
    return StreamPosition(max_row_id=int(newest or 0), new_train_rows=int(fresh))
