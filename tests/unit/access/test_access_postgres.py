"""The audit chain and the access check on PostgreSQL, with concurrent writers.

Runs in a fresh schema dropped afterwards; skipped when no server answers at
``INHOUSE_TEST_POSTGRES_URL`` (default: trust auth on 127.0.0.1:5432, database ``test``).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from inhouse.access import ACCESS_TABLES, AccessService, AuditLog, RequestAuthorizer
from inhouse.access.policy import parse_policy
from inhouse.access.policy_sync import apply_policy, diff_policy
from inhouse.db import Base
from inhouse.errors import AuthenticationError, PermissionDeniedError

pytestmark = pytest.mark.integration

URL = os.environ.get(
    "INHOUSE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    schema = f"access_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(URL, connect_args={"connect_timeout": 3})
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL unreachable at {URL}: {exc.orig}")
    engine = create_engine(
        URL, pool_size=8, connect_args={"options": f"-csearch_path={schema}", "connect_timeout": 3}
    )
    try:
        Base.metadata.create_all(engine, tables=ACCESS_TABLES)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_concurrent_appends_on_postgres(pg_engine: Engine) -> None:
    log = AuditLog(engine=pg_engine)
    errors: list[BaseException] = []
    threads_n, per_thread = 6, 15

    def worker(k: int) -> None:
        try:
            for i in range(per_thread):
                log.append(
                    principal=f"t{k}",
                    action="model:predict",
                    resource="digits",
                    outcome="allow",
                    request_id=f"{k}-{i}",
                )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = log.verify(batch_size=16)
    assert report.ok, report.reason
    assert report.checked == report.head_seq == threads_n * per_thread
    assert [e.id for e in log.tail(3)] == [88, 89, 90]

    with pg_engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET resource = 'cancer' WHERE id = 42"))
    assert log.verify().broken_at == 42
    with pg_engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = 42"))
    broken = log.verify()
    assert not broken.ok and broken.broken_at == 42 and "missing" in (broken.reason or "")


def test_access_check_on_postgres(pg_engine: Engine) -> None:
    service = AccessService(engine=pg_engine, pepper=b"q" * 32)
    service.create_principal(name="alice", roles=["predictor"])
    issued = service.issue_token(principal="alice", expires_in=timedelta(minutes=5))
    header = f"Bearer {issued.token}"
    assert (
        service.check(header, action="model:predict", resource="d", request_id="1").name == "alice"
    )
    with pytest.raises(PermissionDeniedError):
        service.check(header, action="model:deploy", resource="d", request_id="2")
    service.revoke_token(token_id=issued.token_id)
    with pytest.raises(AuthenticationError):
        service.check(header, action="model:predict", resource="d", request_id="3")
    info = service.list_tokens()[0]
    assert info.expires_at.tzinfo is not None and info.last_used_at is not None
    assert service.audit.verify().ok


def test_concurrent_policy_applies_on_postgres(pg_engine: Engine) -> None:
    service = AccessService(engine=pg_engine, pepper=b"q" * 32)
    policy = parse_policy(
        "principals:\n"
        + "".join(
            f"  - name: svc{i}\n    roles: ['service:m{i}-*']\n    permissions: [data:read]\n"
            for i in range(5)
        )
    )
    made: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            made.append(len(apply_policy(service, policy, actor="ci")))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(made) == [0, 0, 0, 15]  # the lock serializes them: one does all the work
    assert diff_policy(service, policy, prune=True).empty
    assert service.audit.verify().ok and service.audit.verify().checked == 15


def test_batched_audit_from_two_replicas_on_postgres(pg_engine: Engine) -> None:
    service = AccessService(engine=pg_engine, pepper=b"q" * 32)
    service.create_principal(name="alice", roles=["predictor"])
    header = f"Bearer {service.issue_token(principal='alice', expires_in=timedelta(hours=1)).token}"
    # Two ingress replicas flushing batches while the CLI path appends one entry at a time.
    replicas = [RequestAuthorizer(service, flush_interval_s=0.002) for _ in range(2)]
    errors: list[BaseException] = []

    def serve(k: int) -> None:
        try:
            for i in range(150):
                replicas[k % 2].authorize(
                    header, action="model:predict", resource="d", request_id=f"{k}-{i}"
                )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def cli() -> None:
        try:
            for i in range(20):
                service.check(header, action="model:predict", resource="d", request_id=f"c-{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=serve, args=(k,)) for k in range(4)]
    threads.append(threading.Thread(target=cli))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for replica in replicas:
        replica.close()
    assert errors == []
    report = service.audit.verify(batch_size=64)
    assert report.ok, report.reason
    assert report.checked == 2 + 4 * 150 + 20  # setup, the decisions, the checks
