"""A bounded queue of audit decisions written by a background thread, many per transaction.

Serving cannot afford one audit transaction per request (the chain head is one row every
writer locks; SQLite has one writer). :class:`AuditQueue` takes decisions in memory, in
order, and a daemon thread appends everything pending in ONE transaction every
``flush_interval_s`` (sooner once ``flush_at`` entries wait), extending the hash chain in
the order the decisions were queued.

Entries leave the queue only after their transaction commits. While the database is
unavailable they stay (retried with exponential backoff); once ``max_pending`` wait,
:meth:`AuditQueue.put` refuses with :class:`~inhouse.errors.UnavailableError` (503), so a
caller fails closed instead of serving requests nobody recorded. Entries still queued when
the process dies are lost: at most ``flush_interval_s`` of decisions in normal operation.

Refusals of callers that are not authenticated go through :meth:`AuditQueue.offer` and a
``source`` (the :class:`~inhouse.access.failures.FailureAggregator`), which may fill only
half of ``max_pending``: a flood of them can never make the queue refuse anyone else.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime

from inhouse.access.audit import AuditLog
from inhouse.access.auditentry import AuditEvent, Outcome
from inhouse.errors import ConfigError, UnavailableError

log = logging.getLogger(__name__)

FLUSH_AT = 500
MAX_BACKOFF_S = 1.0
UNAVAILABLE = "audit log unavailable"


class AuditQueue:
    """Queue decisions and append them to ``audit`` from a background thread.

    Args:
        audit: the hash-chained log written to.
        clock: stamps each entry when it is queued (aware UTC), so ``ts`` follows ids.
        flush_interval_s: the longest an entry waits in a healthy queue.
        max_pending: entries kept while the database is unavailable; beyond, refuse.
        flush_at: pending entries that trigger a flush before the interval is up.
        source: called before each write with the room left for it (half of
            ``max_pending`` minus what waits); the events it returns are written too.

    Raises:
        ConfigError: a non-positive interval, or ``max_pending`` / ``flush_at`` below 1.
    """

    def __init__(
        self,
        audit: AuditLog,
        *,
        clock: Callable[[], datetime],
        flush_interval_s: float = 0.05,
        max_pending: int = 10_000,
        flush_at: int = FLUSH_AT,
        source: Callable[[int], Sequence[AuditEvent]] | None = None,
    ) -> None:
        if not flush_interval_s > 0:
            raise ConfigError(f"flush_interval_s {flush_interval_s!r} must be > 0 seconds")
        if max_pending < 1 or flush_at < 1:
            raise ConfigError(f"max_pending {max_pending} and flush_at {flush_at} must be >= 1")
        self._audit = audit
        self._clock = clock
        self._interval = flush_interval_s
        self._max_pending = max_pending
        self._flush_at = flush_at
        self._source = source
        self._pending: deque[AuditEvent] = deque()
        self._cond = threading.Condition(threading.Lock())
        # Held while writing, so the thread and flush() never append the same entries twice.
        self._write_lock = threading.Lock()
        self._failures = 0
        self._written = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="inhouse-audit-flush", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Entries queued and not yet committed."""
        with self._cond:
            return len(self._pending)

    @property
    def written(self) -> int:
        """Entries committed so far."""
        with self._cond:
            return self._written

    @property
    def failures(self) -> int:
        """Consecutive failed flushes (0 when the last one succeeded)."""
        with self._cond:
            return self._failures

    def check_open(self) -> None:
        """Raise the 503 :meth:`put` would raise now, before doing any work for a request."""
        with self._cond:
            self._refuse_if_full()

    def put(
        self,
        principal: str,
        action: str,
        resource: str,
        outcome: Outcome,
        request_id: str | None,
        detail: str | None,
    ) -> None:
        """Queue one decision, stamped now.

        Raises:
            UnavailableError: ``max_pending`` entries wait (the database has been
                unavailable) or the queue is closed (503: fail closed).
        """
        with self._cond:
            self._refuse_if_full()
            event = AuditEvent(
                self._clock(), principal, action, resource, outcome, request_id, detail
            )
            self._pending.append(event)
            if len(self._pending) == self._flush_at:
                self._cond.notify_all()

    def offer(
        self,
        principal: str,
        action: str,
        resource: str,
        outcome: Outcome,
        request_id: str | None,
        detail: str | None,
    ) -> bool:
        """Queue a decision that may be left out of the log (an unauthenticated refusal).

        Never refuses a request: returns False, queueing nothing, when the queue is closed
        or half full; the caller then counts the decision elsewhere.
        """
        with self._cond:
            if self._closed or len(self._pending) >= self._max_pending // 2:
                return False
            self._pending.append(
                AuditEvent(self._clock(), principal, action, resource, outcome, request_id, detail)
            )
            if len(self._pending) == self._flush_at:
                self._cond.notify_all()
            return True

    def flush(self) -> int:
        """Append every entry queued so far in one transaction, now; returns how many.

        Raises:
            UnavailableError: the write failed; the entries stay queued, in order.
        """
        with self._write_lock:
            if self._source is not None:
                with self._cond:
                    room = self._max_pending // 2 - len(self._pending)
                extra = self._source(room) if room > 0 else ()
                if extra:
                    with self._cond:
                        self._pending.extend(extra)
            with self._cond:
                batch = list(self._pending)
            if not batch:
                return 0
            try:
                self._audit.append_many(batch)
            except Exception as exc:  # any failure: keep the entries, fail closed when full
                with self._cond:
                    self._failures += 1
                    failures = self._failures
                if failures == 1:
                    log.warning("%s, %d entries kept: %s", UNAVAILABLE, len(batch), exc)
                raise UnavailableError(f"{UNAVAILABLE}: {exc}") from exc
            with self._cond:
                for _ in batch:
                    self._pending.popleft()
                recovered, self._failures = self._failures, 0
                self._written += len(batch)
            if recovered:
                log.warning("audit log available again after %d failed flushes", recovered)
            return len(batch)

    def close(self, *, timeout_s: float = 10.0) -> None:
        """Stop the thread and write what is left (idempotent).

        Raises:
            UnavailableError: the last entries could not be written (they are lost).
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        self.flush()

    def _refuse_if_full(self) -> None:
        if self._closed:
            raise UnavailableError(f"{UNAVAILABLE}: the audit queue is closed")
        if len(self._pending) >= self._max_pending:
            raise UnavailableError(
                f"{UNAVAILABLE}: {len(self._pending)} decisions wait to be written; "
                "refusing requests until the database accepts them"
            )

    def _wake(self) -> bool:
        return self._closed or (self._failures == 0 and len(self._pending) >= self._flush_at)

    def _run(self) -> None:
        while True:
            with self._cond:
                # After failures, back off: interval * 2**failures, at most MAX_BACKOFF_S.
                delay = self._interval * 2 ** min(self._failures, 30)
                self._cond.wait_for(
                    self._wake, timeout=max(self._interval, min(delay, MAX_BACKOFF_S))
                )
                if self._closed:
                    return
            try:
                self.flush()
            except UnavailableError:
                pass  # logged in flush(); retried after the backoff
