"""The batched audit behind RequestAuthorizer: order under threads, outages, fail closed."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.exc import OperationalError

from inhouse.access import AccessService
from inhouse.access.audit import AuditLog
from inhouse.access.auditentry import AuditEvent
from inhouse.access.fastpath import RequestAuthorizer
from inhouse.access.records import GENESIS_HASH, AuditRecord
from inhouse.db import session_scope
from inhouse.errors import AuthenticationError, UnavailableError

HOUR = timedelta(hours=1)
PREDICT = {"action": "model:predict", "resource": "digits"}


def wait_until(condition: Callable[[], bool], *, timeout_s: float = 10.0) -> None:
    """Poll ``condition`` (without sleeping the test into flakiness) until true or fail."""
    tick = threading.Event()
    for _ in range(int(timeout_s / 0.005)):
        if condition():
            return
        tick.wait(0.005)
    raise AssertionError(f"condition not met within {timeout_s} s")


class AuditOutage:
    """Makes every write to the audit tables fail while ``down`` is set."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.down = False
        self.refused = 0
        event.listen(engine, "before_cursor_execute", self._maybe_fail)

    def _maybe_fail(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.down and "audit_" in statement and not statement.lstrip().startswith("SELECT"):
            self.refused += 1
            raise OperationalError(statement, None, Exception("database is locked"))

    def remove(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._maybe_fail)


@pytest.fixture
def outage(engine: Engine) -> Iterator[AuditOutage]:
    failure = AuditOutage(engine)
    yield failure
    failure.remove()


@pytest.fixture
def alice(service: AccessService) -> str:
    service.create_principal(name="alice")
    service.grant(principal="alice", action="model:predict", resource="digits")
    return f"Bearer {service.issue_token(principal='alice', expires_in=HOUR).token}"


def audit_rows(engine: Engine) -> list[AuditRecord]:
    with session_scope(engine) as session:
        return list(session.scalars(select(AuditRecord).order_by(AuditRecord.id)))


def test_append_many_is_one_chain_with_single_appends(engine: Engine) -> None:
    log = AuditLog(engine=engine)
    first = log.append(principal="a", action="data:read", resource="x", outcome="allow")
    ts = first.ts + timedelta(seconds=5)
    batch = log.append_many(
        [AuditEvent(ts, "b", "data:read", "x", "deny", f"r{i}", "d\x00") for i in range(3)]
    )
    last = log.append(principal="c", action="data:read", resource="x", outcome="allow")
    assert [e.id for e in batch] == [2, 3, 4] and last.id == 5
    assert batch[0].prev_hash == first.hash and last.prev_hash == batch[-1].hash
    assert all(e.ts == ts and e.detail == "d?" for e in batch)  # own time, cleaned text
    assert log.append_many([]) == []
    report = log.verify()
    assert report.ok and report.checked == 5 and report.head_hash == last.hash
    assert first.prev_hash == GENESIS_HASH


def test_thousand_decisions_from_eight_threads_land_in_order(
    service: AccessService, engine: Engine, alice: str
) -> None:
    threads_n, per_thread = 8, 125
    errors: list[BaseException] = []
    # A short interval: the thread flushes while the workers decide. Every refusal is
    # audited on its own (no per-window aggregation), so each thread's order can be checked.
    fast = RequestAuthorizer(service, cache_ttl_s=60, flush_interval_s=0.002, failure_window_s=0)
    start = threading.Barrier(threads_n)

    def worker(k: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                header = alice if i % 5 else None  # some denials in the mix
                try:
                    fast.authorize(header, request_id=f"t{k}-{i:03d}", **PREDICT)
                except AuthenticationError:
                    pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fast.close()
    assert errors == []
    rows = audit_rows(engine)
    decisions = [r for r in rows if (r.request_id or "").startswith("t")]
    assert len(decisions) == threads_n * per_thread
    for k in range(threads_n):
        mine = [r.request_id for r in decisions if (r.request_id or "").startswith(f"t{k}-")]
        assert mine == [f"t{k}-{i:03d}" for i in range(per_thread)]  # each thread's order kept
    assert [r.id for r in rows] == list(range(1, len(rows) + 1))
    assert all(a.ts <= b.ts for a, b in zip(decisions, decisions[1:], strict=False))
    report = service.audit.verify(batch_size=97)
    assert report.ok, report.reason
    assert report.checked == len(rows)


def test_outage_keeps_entries_then_fails_closed_then_recovers(
    service: AccessService, engine: Engine, alice: str, outage: AuditOutage
) -> None:
    fast = RequestAuthorizer(service, cache_ttl_s=60, flush_interval_s=3600, max_pending=5)
    fast.authorize(alice, request_id="r0", **PREDICT)  # cached before the outage
    outage.down = True
    for i in range(1, 5):
        fast.authorize(alice, request_id=f"r{i}", **PREDICT)
    with pytest.raises(UnavailableError, match="audit log unavailable"):
        fast.flush()
    assert fast.queue.pending == 5 and fast.queue.failures == 1
    # Full: every request is refused with 503 rather than served unaudited.
    with pytest.raises(UnavailableError, match="audit log unavailable") as info:
        fast.authorize(alice, request_id="refused", **PREDICT)
    assert info.value.status_code == 503
    with pytest.raises(UnavailableError):
        fast.authorize(None, request_id="refused-anon", **PREDICT)
    assert fast.queue.pending == 5
    outage.down = False
    fast.flush()  # the flush thread's retry may have written them first: either way, all 5
    assert fast.queue.pending == 0 and fast.queue.failures == 0
    fast.authorize(alice, request_id="r5", **PREDICT)
    fast.close()
    ids = [r.request_id for r in audit_rows(engine) if r.request_id]
    assert ids == [f"r{i}" for i in range(6)]
    assert service.audit.verify().ok


def test_background_thread_retries_until_the_database_returns(
    service: AccessService, engine: Engine, alice: str, outage: AuditOutage
) -> None:
    outage.down = True
    fast = RequestAuthorizer(service, cache_ttl_s=60, flush_interval_s=0.005)
    try:
        fast.authorize(alice, request_id="during", **PREDICT)
        wait_until(lambda: fast.queue.failures >= 2)  # retried, with backoff
        assert fast.queue.pending == 1
        outage.down = False
        wait_until(lambda: fast.queue.pending == 0)
        assert fast.queue.failures == 0 and fast.queue.written == 1
    finally:
        fast.close()
    assert service.audit.tail(1)[0].request_id == "during"
    assert service.audit.verify().ok


def test_batch_trigger_flushes_before_the_interval(service: AccessService, alice: str) -> None:
    fast = RequestAuthorizer(service, cache_ttl_s=60, flush_interval_s=3600, max_pending=20)
    try:
        for i in range(20):  # flush_at is min(500, max_pending) = 20
            fast.authorize(alice, request_id=f"r{i}", **PREDICT)
        wait_until(lambda: fast.queue.written == 20)
    finally:
        fast.close()


def test_close_reports_entries_it_could_not_write(
    service: AccessService, alice: str, outage: AuditOutage
) -> None:
    fast = RequestAuthorizer(service, cache_ttl_s=60, flush_interval_s=3600)
    fast.authorize(alice, request_id="r1", **PREDICT)
    outage.down = True
    with pytest.raises(UnavailableError):
        fast.close()
    outage.down = False
    assert fast.flush() == 1  # still queued: a caller may retry before giving up
