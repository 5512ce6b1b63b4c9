"""The append-only contract, checked: a count and checksum per consumed ``seq`` window.

Watermarks, the lineage's row windows and the privacy ledger all assume that rows are only
ever appended: once a model consumed the rows up to ``seq`` S, none of them changes or goes.
Before any training reads a data set (``inhouse train``, a coordinator retrain),
:func:`check_consumed` re-reads the windows consumed so far, compares each one's row count and
checksum with what was recorded when it was first consumed, and records the newly consumed
window. A mismatch raises :class:`~inhouse.errors.DataChangedError` (one line naming the data
set and the window), which stops that training, and the coordinator of a model learning from
it, until the rows are restored (or the data set re-created or re-registered under a new name).

The windows tile the consumed prefix ``(0, u1], (u1, u2], ...``, so every consumed row is
hashed once per check, in one ordered pass. The checksum is BLAKE2b-128 over each row's
non-null values as training reads them (``seq``, id, split, label, the features as stored,
text, any further column such as ``packed``; ``ingested_at`` left out), so a column
added later with nulls does not change old windows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Engine,
    String,
    Text,
    UniqueConstraint,
    cast,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from inhouse.db import Base, BigId, session_scope
from inhouse.errors import DataChangedError


class ConsumedWindowRecord(Base):
    """One consumed window ``after_seq < seq <= up_to_seq`` of a data set, as first read."""

    __tablename__ = "consumed_windows"
    __table_args__ = (
        UniqueConstraint("dataset", "after_seq"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(String(48), index=True)
    after_seq: Mapped[int] = mapped_column(BigInteger)
    up_to_seq: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(BigInteger)
    checksum: Mapped[str] = mapped_column(String(64))
    recorded_by: Mapped[str] = mapped_column(String(128))
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


@dataclass(frozen=True)
class Window:
    """A ``seq`` window's fingerprint."""

    after_seq: int
    up_to_seq: int
    rows: int
    checksum: str


def _encode(row: Sequence[Any]) -> str:
    """One row as text: the ``repr`` of its non-null values, so a column added later with
    nulls leaves old windows' checksums alone."""
    values = tuple(row)
    if None in values:
        values = tuple(v for v in values if v is not None)
    return repr(values)


def fingerprints(rows: Iterable[Sequence[Any]], bounds: list[tuple[int, int]]) -> list[Window]:
    """Fingerprint consecutive windows ``bounds`` from rows whose first value is their ``seq``,
    in ``seq`` order."""
    hashers = [hashlib.blake2b(digest_size=16) for _ in bounds]
    counts = [0] * len(bounds)
    pending: list[str] = []
    at = 0

    def flush() -> None:
        if pending:
            hashers[at].update("\n".join(pending).encode())
            hashers[at].update(b"\n")
            pending.clear()

    for row in rows:
        seq = row[0]
        if seq > bounds[at][1]:
            flush()
            while at < len(bounds) and seq > bounds[at][1]:
                at += 1
            if at == len(bounds):
                break
        if seq <= bounds[at][0]:
            continue
        counts[at] += 1
        pending.append(_encode(row))
        if len(pending) >= 4096:
            flush()
    if at < len(bounds):
        flush()
    return [
        Window(lo, hi, n, h.hexdigest())
        for (lo, hi), n, h in zip(bounds, counts, hashers, strict=True)
    ]


def _rows(engine: Engine, dataset: str, after: int, up_to: int) -> Iterator[Sequence[Any]]:
    """The data set's rows with ``after < seq <= up_to``, ``seq`` first, in ``seq`` order:
    what training reads (split, label, features as stored, text, packed bytes)."""
    from inhouse.data.store import get_dataset

    record = get_dataset(engine, dataset)
    if record.source is not None:
        from inhouse.data.external_read import window_rows

        yield from window_rows(engine, record, after=after, up_to=up_to)
        return
    from inhouse.data.table import rows_table

    table = rows_table(dataset)
    columns: list[Any] = [table.c.seq, table.c.id, table.c.split, table.c.label]
    columns += [cast(table.c.features, Text), table.c.text]
    columns += [
        c
        for c in table.c
        if c.name not in {"seq", "id", "split", "label", "features", "text", "ingested_at"}
    ]
    query = (
        select(*columns)
        .where(table.c.seq > after, table.c.seq <= up_to)
        .order_by(table.c.seq)
        .execution_options(yield_per=20_000)
    )
    with engine.connect() as conn:
        yield from conn.execute(query).tuples()


def recorded(engine: Engine, dataset: str) -> list[Window]:
    """The consumed windows of ``dataset``, oldest first."""
    with session_scope(engine) as session:
        found = session.scalars(
            select(ConsumedWindowRecord)
            .where(ConsumedWindowRecord.dataset == dataset)
            .order_by(ConsumedWindowRecord.after_seq)
        ).all()
        return [Window(r.after_seq, r.up_to_seq, r.rows, r.checksum) for r in found]


def verify(engine: Engine, dataset: str) -> list[Window]:
    """Re-read every consumed window of ``dataset``; raises DataChangedError at the first
    one whose count or checksum changed. Returns the windows."""
    windows = recorded(engine, dataset)
    if not windows:
        return windows
    bounds = [(w.after_seq, w.up_to_seq) for w in windows]
    now = fingerprints(_rows(engine, dataset, bounds[0][0], bounds[-1][1]), bounds)
    for was, fresh in zip(windows, now, strict=True):
        if (was.rows, was.checksum) != (fresh.rows, fresh.checksum):
            raise DataChangedError(
                f"data set {dataset!r} changed in consumed rows seq {was.after_seq + 1}.."
                f"{was.up_to_seq}: {was.rows} rows (checksum {was.checksum[:12]}) when consumed, "
                f"{fresh.rows} rows (checksum {fresh.checksum[:12]}) now; rows must only be "
                "appended, never updated or deleted: restore them, or register the data under "
                "a new name"
            )
    return windows


def check_consumed(engine: Engine, dataset: str, *, up_to: int | None, by: str) -> None:
    """Verify the consumed windows of ``dataset``, then record ``(last consumed, up_to]`` as
    consumed by ``by`` (a run's name). Call before a training reads rows up to ``up_to``."""
    for _attempt in range(3):
        windows = verify(engine, dataset)
        last = windows[-1].up_to_seq if windows else 0
        if up_to is None or up_to <= last:
            return
        (fresh,) = fingerprints(_rows(engine, dataset, last, up_to), [(last, up_to)])
        try:
            with session_scope(engine) as session:
                session.add(
                    ConsumedWindowRecord(
                        dataset=dataset,
                        after_seq=fresh.after_seq,
                        up_to_seq=fresh.up_to_seq,
                        rows=fresh.rows,
                        checksum=fresh.checksum,
                        recorded_by=by[:128],
                    )
                )
            return
        except SQLIntegrityError:  # another run recorded from the same point: verify theirs
            continue
