"""A data set's ledger state and optimistic, serialisable writes to it.

Every write to a data set's ledger (a charge reserved, settled or refunded, a budget or
exemption changed) bumps ``seq`` on its ``privacy_budgets`` row in the same transaction,
with ``UPDATE ... SET seq = seq + 1 WHERE dataset = :d AND seq = :seen``. A writer reads the
state, decides (the accountant's composition can take a second or more, so no lock is held
meanwhile), then writes only if ``seq`` is still the one it read; otherwise it reads again
and decides again. Two reservations can therefore never both be admitted against the same
spend, on PostgreSQL (the row lock, READ COMMITTED re-checks the WHERE) and on SQLite (the
UPDATE is the transaction's first statement and takes the write lock), and the database's
write lock is held for milliseconds, not for the accountant's work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, cast

from sqlalchemy import CursorResult, Engine, select, update
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session

from inhouse.db import session_scope
from inhouse.errors import ConflictError
from inhouse.privacy.accounting import DEFAULT_ACCOUNTANT, Mechanism, Span
from inhouse.privacy.records import COUNTED, BudgetRecord, ChargeRecord
from inhouse.privacy.types import Budget

T = TypeVar("T")
MAX_ATTEMPTS = 50


class Stale(Exception):
    """The data set's ledger changed since it was read: read again and decide again."""


@dataclass(frozen=True)
class State:
    """What a writer decides on: the budget and the counted charges, as of ``seq``."""

    dataset: str
    seq: int
    budget: Budget | None
    non_dp_allowed: bool
    spans: list[Span]


def ensure_row(engine: Engine, dataset: str) -> None:
    """Create the data set's ledger row (no budget) unless it exists."""
    with session_scope(engine) as session:
        if session.get(BudgetRecord, dataset) is not None:
            return
    try:
        with session_scope(engine) as session:
            session.add(BudgetRecord(dataset=dataset, seq=0, accountant=DEFAULT_ACCOUNTANT))
    except SQLIntegrityError:
        pass  # a concurrent writer made it


def counted_spans(session: Session, dataset: str) -> list[Span]:
    """The charges that count against the budget, oldest first, as accountant spans."""
    records = session.scalars(
        select(ChargeRecord)
        .where(ChargeRecord.dataset == dataset, ChargeRecord.status.in_(COUNTED))
        .order_by(ChargeRecord.id)
    ).all()
    return [
        Span(r.first_id, r.up_to_id, Mechanism(r.noise_multiplier, r.sample_rate, r.steps))
        for r in records
        if r.steps > 0
    ]


def read_state(engine: Engine, dataset: str) -> State:
    """The data set's state in one consistent read (its row must exist: :func:`ensure_row`)."""
    with session_scope(engine) as session:
        record = session.get(BudgetRecord, dataset)
        if record is None:
            raise ConflictError(f"privacy ledger row of {dataset!r} is missing; retry")
        spans = counted_spans(session, dataset)
        return State(dataset, record.seq, Budget._from(record), record.non_dp_allowed, spans)


def is_current(engine: Engine, state: State) -> bool:
    """Whether nothing was written to the data set's ledger since ``state`` was read."""
    with session_scope(engine) as session:
        seq = session.scalar(select(BudgetRecord.seq).where(BudgetRecord.dataset == state.dataset))
    return seq == state.seq


def refuse_if_current(engine: Engine, state: State, error: Exception) -> Exception:
    """``error`` to raise if the refusal was decided on current state; raises Stale if not."""
    if not is_current(engine, state):
        raise Stale()
    return error


def write_if_unchanged(
    engine: Engine, state: State, write: Callable[[Session, BudgetRecord], T]
) -> T:
    """Run ``write`` in a transaction that first claims ``seq``; raises Stale if it moved."""
    with session_scope(engine) as session:
        result = cast(
            CursorResult[tuple[()]],
            session.execute(
                update(BudgetRecord)
                .where(BudgetRecord.dataset == state.dataset, BudgetRecord.seq == state.seq)
                .values(seq=BudgetRecord.seq + 1)
                .execution_options(synchronize_session=False)
            ),
        )
        if result.rowcount != 1:
            raise Stale()
        record = session.get(BudgetRecord, state.dataset, populate_existing=True)
        if record is None:  # unreachable: the UPDATE just matched it
            raise Stale()
        return write(session, record)


def retrying(engine: Engine, dataset: str, attempt: Callable[[State], T]) -> T:
    """Call ``attempt(state)`` on fresh state until it does not raise Stale."""
    ensure_row(engine, dataset)
    for _ in range(MAX_ATTEMPTS):
        try:
            return attempt(read_state(engine, dataset))
        except Stale:
            continue
    raise ConflictError(f"the privacy ledger of {dataset!r} kept changing; retry")
