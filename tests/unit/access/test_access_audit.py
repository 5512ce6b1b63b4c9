"""The hash-chained audit log on SQLite: append, tail, verify, and tamper detection."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, text

from inhouse.access.audit import AuditLog
from inhouse.access.auditentry import entry_hash
from inhouse.access.records import GENESIS_HASH
from inhouse.errors import InvalidInputError, UnavailableError

if TYPE_CHECKING:
    from conftest import FakeClock


@pytest.fixture
def log(engine: Engine, clock: FakeClock) -> AuditLog:
    return AuditLog(engine=engine, clock=clock)


def _fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append(
            principal=f"user{i % 3}",
            action="model:predict",
            resource="digits",
            outcome="allow" if i % 2 else "deny",
            request_id=f"req-{i}",
            detail=f"n={i}",
        )


def _sql(engine: Engine, statement: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement))


def test_append_links_entries(log: AuditLog) -> None:
    first = log.append(principal="a", action="data:read", resource="x", outcome="allow")
    second = log.append(principal="b", action="data:write", resource="y", outcome="deny")
    assert (first.id, second.id) == (1, 2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.hash
    assert entry_hash(first.to_dict() | {"ts": first.ts}) == first.hash
    assert first.to_dict()["ts"].endswith("Z")


def test_tail_returns_last_entries_oldest_first(log: AuditLog) -> None:
    assert log.tail(5) == []
    _fill(log, 7)
    assert [e.id for e in log.tail(3)] == [5, 6, 7]
    assert [e.id for e in log.tail(100)] == list(range(1, 8))
    with pytest.raises(InvalidInputError):
        log.tail(0)


def test_verify_ok(log: AuditLog) -> None:
    empty = log.verify()
    assert empty.ok and empty.checked == 0 and empty.head_hash == GENESIS_HASH
    _fill(log, 25)
    report = log.verify(batch_size=4)
    assert report.ok and report.checked == 25 and report.broken_at is None
    assert report.head_seq == 25 and report.head_hash == log.tail(1)[0].hash


def test_tampered_row_detected(log: AuditLog, engine: Engine) -> None:
    _fill(log, 10)
    _sql(engine, "UPDATE audit_log SET outcome = 'allow' WHERE id = 3")  # was deny
    report = log.verify(batch_size=3)
    assert not report.ok and report.broken_at == 3 and "altered" in (report.reason or "")


def test_tampered_row_with_recomputed_hash_breaks_next_link(log: AuditLog, engine: Engine) -> None:
    _fill(log, 5)
    row = {**log.tail(5)[2].__dict__, "principal": "someone-else"}
    forged = entry_hash(row)
    _sql(engine, f"UPDATE audit_log SET principal = 'someone-else', hash = '{forged}' WHERE id = 3")
    report = log.verify()
    assert not report.ok and report.broken_at == 4 and "link" in (report.reason or "")


def test_deleted_row_detected(log: AuditLog, engine: Engine) -> None:
    _fill(log, 10)
    _sql(engine, "DELETE FROM audit_log WHERE id = 6")
    report = log.verify()
    assert not report.ok and report.broken_at == 6 and "missing" in (report.reason or "")
    assert report.checked == 5


def test_deleted_first_and_last_rows_detected(log: AuditLog, engine: Engine) -> None:
    _fill(log, 4)
    _sql(engine, "DELETE FROM audit_log WHERE id = 4")
    assert log.verify().broken_at == 4
    _sql(engine, "DELETE FROM audit_log WHERE id = 1")
    assert log.verify().broken_at == 1


def test_missing_head_fails_closed(log: AuditLog, engine: Engine) -> None:
    _fill(log, 2)
    _sql(engine, "DELETE FROM audit_chain_head")
    assert not log.verify().ok
    with pytest.raises(UnavailableError, match="tampered"):
        log.append(principal="a", action="b", resource="c", outcome="allow")


def test_missing_head_on_empty_log_is_recreated(log: AuditLog, engine: Engine) -> None:
    _sql(engine, "DELETE FROM audit_chain_head")
    assert log.append(principal="a", action="b", resource="c", outcome="allow").id == 1
    assert log.verify().ok


def test_input_is_validated_and_sanitized(log: AuditLog) -> None:
    with pytest.raises(InvalidInputError):
        log.append(principal="a", action="b", resource="c", outcome="maybe")  # type: ignore[arg-type]
    entry = log.append(
        principal="x" * 500,
        action="model:predict",
        resource="d",
        outcome="deny",
        request_id="evil\r\nInjected: yes",
        detail="y" * 10_000,
    )
    assert len(entry.principal) == 128 and entry.request_id == "evil??Injected: yes"
    assert entry.detail is not None and len(entry.detail) == 4000
    assert log.verify().ok


def test_concurrent_appends_keep_chain_intact(engine: Engine) -> None:
    log = AuditLog(engine=engine)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(10):
                log.append(principal=f"t{k}", action="data:read", resource="x", outcome="allow",
                           request_id=f"{k}-{i}")  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = log.verify()
    assert report.ok and report.checked == 40 and report.head_seq == 40
