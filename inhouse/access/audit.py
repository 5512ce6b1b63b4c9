"""Append-only, hash-chained audit log (``inhouse audit tail|verify``).

Each entry's ``hash`` is SHA-256 over the canonical JSON of its fields, ``prev_hash``
included, so altering, deleting or reordering any entry breaks every link after it.
Appenders serialize on the chain head row: the ``UPDATE`` that bumps it takes a row lock on
PostgreSQL and the write lock on SQLite before the head is read, so two writers can never
extend the same link (and ``prev_hash`` is unique as a second guard).

A plain hash chain is tamper-evident, not tamper-proof: someone able to rewrite the whole
table can recompute it. Copy :attr:`VerifyReport.head_hash` somewhere else now and then
(an anchor) to close that gap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from inhouse.access.auditentry import (
    AuditEntry,
    AuditEvent,
    Outcome,
    VerifyReport,
    audit_fields,
    entry_hash,
    entry_of,
)
from inhouse.access.records import (
    CHAIN_HEAD_ID,
    GENESIS_HASH,
    AuditChainHead,
    AuditRecord,
)
from inhouse.db import session_scope, utcnow
from inhouse.errors import InvalidInputError, UnavailableError

MAX_TAIL = 10_000
_TABLE = cast(Table, AuditRecord.__table__)


class AuditLog:
    """The audit log over one database engine.

    Args:
        engine: the metadata database (tables from :mod:`inhouse.access.records`).
        clock: returns the current aware UTC time; tests inject one.
        retries: attempts at an append when a concurrent writer wins a race.
    """

    def __init__(
        self, *, engine: Engine, clock: Callable[[], datetime] = utcnow, retries: int = 8
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._retries = retries

    def append(
        self,
        *,
        principal: str,
        action: str,
        resource: str,
        outcome: Outcome,
        request_id: str | None = None,
        detail: str | None = None,
    ) -> AuditEntry:
        """Append one entry at the end of the chain and return it.

        Raises:
            InvalidInputError: ``outcome`` is not allow, deny or error.
            UnavailableError: the entry could not be written (fail closed: callers deny).
        """
        fields = audit_fields(principal, action, resource, outcome, request_id, detail)
        error: Exception | None = None
        for attempt in range(self._retries):
            try:
                with session_scope(self._engine) as session:
                    return self._extend(session, fields)
            except (IntegrityError, OperationalError, UnavailableError) as exc:
                error = exc
                time.sleep(min(0.005 * 2**attempt, 0.2))
        raise UnavailableError(f"cannot append to the audit log: {error}")

    def append_in(
        self,
        session: Session,
        *,
        principal: str,
        action: str,
        resource: str,
        outcome: Outcome,
        request_id: str | None = None,
        detail: str | None = None,
    ) -> AuditEntry:
        """Append inside the caller's transaction, so a change and its entry commit together.

        The chain head stays locked until that transaction ends: keep it short.
        """
        fields = audit_fields(principal, action, resource, outcome, request_id, detail)
        return self._extend(session, fields)

    def append_many(self, events: Sequence[AuditEvent]) -> list[AuditEntry]:
        """Append ``events`` in order in ONE transaction (one chain-head lock); return them.

        Each entry keeps its event's ``ts``. All or nothing: on failure no entry is written,
        and there is no retry here (a caller that queues decisions retries the whole batch).

        Raises:
            InvalidInputError: an outcome is not allow, deny or error.
            UnavailableError: the entries could not be written.
        """
        if not events:
            return []
        try:
            with session_scope(self._engine) as session:
                return self.append_many_in(session, events)
        except (IntegrityError, OperationalError, UnavailableError) as exc:
            raise UnavailableError(f"cannot append to the audit log: {exc}") from exc

    def append_many_in(self, session: Session, events: Sequence[AuditEvent]) -> list[AuditEntry]:
        """Append ``events`` in order inside the caller's transaction (see :meth:`append_in`)."""
        rows = [
            {
                **audit_fields(
                    e.principal, e.action, e.resource, e.outcome, e.request_id, e.detail
                ),
                "ts": e.ts,
            }
            for e in events
        ]
        return self._extend_many(session, rows) if rows else []

    @staticmethod
    def lock_in(session: Session) -> None:
        """Take the chain lock in the caller's transaction (a no-op write of the head row):
        every other append and access change waits until that transaction ends."""
        session.execute(
            update(AuditChainHead)
            .where(AuditChainHead.id == CHAIN_HEAD_ID)
            .values(seq=AuditChainHead.seq)
        )

    def _extend(self, session: Session, fields: dict[str, Any]) -> AuditEntry:
        return self._extend_many(session, [fields])[0]

    def _extend_many(self, session: Session, rows: list[dict[str, Any]]) -> list[AuditEntry]:
        # The UPDATE comes first so the lock is held before the head is read; it reserves
        # len(rows) consecutive ids at once.
        bumped: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(AuditChainHead)
            .where(AuditChainHead.id == CHAIN_HEAD_ID)
            .values(seq=AuditChainHead.seq + len(rows))
        )
        if bumped.rowcount == 0:
            self._recreate_empty_head(session)
            return self._extend_many(session, rows)
        seq, prev_hash = session.execute(
            select(AuditChainHead.seq, AuditChainHead.hash).where(
                AuditChainHead.id == CHAIN_HEAD_ID
            )
        ).one()
        now = self._clock()
        written: list[dict[str, Any]] = []
        for offset, fields in enumerate(rows):
            # An entry without a time of its own is stamped now, under the lock.
            row = {**fields, "id": seq - len(rows) + 1 + offset, "prev_hash": prev_hash}
            row["ts"] = fields.get("ts") or now
            row["hash"] = prev_hash = entry_hash(row)
            written.append(row)
        # Core executemany: the ORM's bulk path costs more than the rest of the append.
        session.execute(insert(_TABLE), written)
        session.execute(
            update(AuditChainHead).where(AuditChainHead.id == CHAIN_HEAD_ID).values(hash=prev_hash)
        )
        return [AuditEntry(**row) for row in written]

    @staticmethod
    def _recreate_empty_head(session: Session) -> None:
        count = session.execute(select(func.count()).select_from(AuditRecord)).scalar_one()
        if count:
            # Rebuilding the head from the rows would hide a truncated tail: fail closed.
            raise UnavailableError(
                "audit chain head row is missing while the log has entries; "
                "the log may have been tampered with: run `inhouse audit verify`"
            )
        session.execute(insert(AuditChainHead).values(id=CHAIN_HEAD_ID, seq=0, hash=GENESIS_HASH))

    def tail(self, n: int = 20) -> list[AuditEntry]:
        """The last ``n`` entries, oldest first."""
        if not 1 <= n <= MAX_TAIL:
            raise InvalidInputError(f"tail size {n} must be between 1 and {MAX_TAIL}")
        with session_scope(self._engine) as session:
            rows = session.scalars(select(AuditRecord).order_by(AuditRecord.id.desc()).limit(n))
            return [entry_of(r) for r in reversed(list(rows))]

    def verify(self, *, batch_size: int = 1000) -> VerifyReport:
        """Walk the chain from the start and report the first broken link, if any.

        Entries appended while verifying (after the head is read) are not checked.
        """
        with session_scope(self._engine) as session:
            head = session.get(AuditChainHead, CHAIN_HEAD_ID)
            head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS_HASH)
            count = session.execute(select(func.count()).select_from(AuditRecord)).scalar_one()
        checked, expected_id, prev = 0, 1, GENESIS_HASH

        def report(broken_at: int | None, reason: str | None) -> VerifyReport:
            return VerifyReport(reason is None, checked, broken_at, reason, head_seq, head_hash)

        if head is None and count:
            return report(None, f"audit chain head row is missing but {count} entries exist")

        while True:
            with session_scope(self._engine) as session:
                rows = list(
                    session.scalars(
                        select(AuditRecord)
                        .where(AuditRecord.id >= expected_id, AuditRecord.id <= head_seq)
                        .order_by(AuditRecord.id)
                        .limit(batch_size)
                    )
                )
            for row in rows:
                entry = entry_of(row)
                if entry.id != expected_id:
                    return report(expected_id, f"entry {expected_id} is missing")
                if entry.prev_hash != prev:
                    return report(entry.id, f"entry {entry.id} does not link to its predecessor")
                if entry_hash(asdict(entry)) != entry.hash:
                    return report(entry.id, f"entry {entry.id} was altered: hash mismatch")
                checked, expected_id, prev = checked + 1, expected_id + 1, entry.hash
            if len(rows) < batch_size:
                break
        if expected_id <= head_seq:
            return report(expected_id, f"entries {expected_id}..{head_seq} are missing")
        if prev != head_hash:
            return report(head_seq, "last entry does not match the chain head hash")
        return report(None, None)
