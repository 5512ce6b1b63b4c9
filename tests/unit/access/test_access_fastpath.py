"""RequestAuthorizer: the cached token check, same decisions and audit entries as check()."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Engine, event, select

from inhouse.access import AccessService, RateLimiter
from inhouse.access.fastbench import measure
from inhouse.access.fastpath import RequestAuthorizer
from inhouse.access.records import AuditRecord
from inhouse.db import session_scope
from inhouse.errors import (
    AuthenticationError,
    InhouseError,
    PermissionDeniedError,
    RateLimitedError,
    UnavailableError,
)

if TYPE_CHECKING:
    from conftest import FakeClock

HOUR = timedelta(hours=1)
PREDICT = {"action": "model:predict", "resource": "digits"}


class QueryCounter:
    """Counts SQL statements this thread sends to ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.thread = threading.get_ident()
        self.n = 0
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *_args: Any) -> None:
        if threading.get_ident() == self.thread:
            self.n += 1

    def remove(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._count)


@pytest.fixture
def queries(engine: Engine) -> Iterator[QueryCounter]:
    counter = QueryCounter(engine)
    yield counter
    counter.remove()


def make(service: AccessService, **kwargs: Any) -> RequestAuthorizer:
    # A long interval: the background thread stays idle and the test flushes by hand.
    return RequestAuthorizer(service, **{"cache_ttl_s": 60.0, "flush_interval_s": 3600} | kwargs)


@pytest.fixture
def fast(service: AccessService) -> Iterator[RequestAuthorizer]:
    authorizer = make(service)
    yield authorizer
    authorizer.close()


@pytest.fixture
def alice(service: AccessService) -> str:
    service.create_principal(name="alice")
    service.grant(principal="alice", action="model:predict", resource="digits")
    return f"Bearer {service.issue_token(principal='alice', expires_in=HOUR).token}"


def audit_rows(engine: Engine) -> list[AuditRecord]:
    with session_scope(engine) as session:
        return list(session.scalars(select(AuditRecord).order_by(AuditRecord.id)))


def test_cached_path_reads_nothing_from_the_database(
    fast: RequestAuthorizer, alice: str, queries: QueryCounter
) -> None:
    assert fast.authorize(alice, request_id="r0", **PREDICT).name == "alice"
    assert queries.n > 0  # the first use reads the token, principal, roles and grants
    queries.n = 0
    for i in range(50):
        principal = fast.authorize(alice, request_id=f"r{i}", **PREDICT)
        assert principal.name == "alice" and principal.token_id
    assert queries.n == 0
    assert fast.queue.pending == 51
    assert fast.flush() == 51 and fast.queue.pending == 0


def test_expired_token_is_refused_at_once_even_when_cached(
    service: AccessService, fast: RequestAuthorizer, clock: FakeClock, queries: QueryCounter
) -> None:
    service.create_principal(name="bob", roles=["predictor"])
    issued = service.issue_token(principal="bob", expires_in=timedelta(seconds=10))
    header = f"Bearer {issued.token}"
    fast.authorize(header, request_id="ok", **PREDICT)
    clock.advance(timedelta(seconds=10))  # well within the 60 s cache TTL
    queries.n = 0
    with pytest.raises(AuthenticationError, match="token expired"):
        fast.authorize(header, request_id="late", **PREDICT)
    assert queries.n == 0
    fast.flush()
    last = audit_rows(service._engine)[-1]
    assert (last.principal, last.outcome, last.request_id) == ("bob", "deny", "late")
    assert last.detail == f"unauthenticated: expired token {issued.token_id}"


def test_revocation_and_grant_changes_take_effect_after_the_ttl(
    service: AccessService, alice: str, clock: FakeClock
) -> None:
    service.create_principal(name="carol", roles=["predictor"])
    carol = service.issue_token(principal="carol", expires_in=HOUR)
    with make(service, cache_ttl_s=1.0) as fast:
        fast.authorize(alice, request_id="a1", **PREDICT)
        fast.authorize(f"Bearer {carol.token}", request_id="c1", **PREDICT)
        service.revoke_token(token_id=carol.token_id)
        service.revoke_grant(principal="alice", action="model:predict", resource="digits")
        # Still inside the TTL: the cached state is served (documented staleness).
        clock.advance(timedelta(seconds=0.5))
        fast.authorize(alice, request_id="a2", **PREDICT)
        fast.authorize(f"Bearer {carol.token}", request_id="c2", **PREDICT)
        clock.advance(timedelta(seconds=0.5))
        with pytest.raises(AuthenticationError, match="token revoked"):
            fast.authorize(f"Bearer {carol.token}", request_id="c3", **PREDICT)
        with pytest.raises(PermissionDeniedError):
            fast.authorize(alice, request_id="a3", **PREDICT)
        service.disable_principal(name="alice")
        fast.invalidate()  # an in-process admin change need not wait for the TTL
        with pytest.raises(AuthenticationError, match="principal disabled"):
            fast.authorize(alice, request_id="a4", **PREDICT)


def test_wrong_secret_for_a_cached_token_is_refused_not_served(
    fast: RequestAuthorizer, alice: str, engine: Engine, queries: QueryCounter
) -> None:
    fast.authorize(alice, request_id="good", **PREDICT)
    token_id = alice.split("_")[1]
    forged = f"Bearer ih_{token_id}_{'A' * 43}"
    queries.n = 0
    with pytest.raises(AuthenticationError, match="invalid token"):
        fast.authorize(forged, request_id="forged", **PREDICT)
    # The forgery neither reached the database nor evicted the real token's entry.
    assert fast.authorize(alice, request_id="good-again", **PREDICT).name == "alice"
    assert queries.n == 0
    fast.flush()
    rows = {r.request_id: r for r in audit_rows(engine)}
    assert (rows["forged"].principal, rows["forged"].outcome) == ("-", "deny")
    assert rows["forged"].detail == f"unauthenticated: bad token {token_id}"
    assert rows["good-again"].outcome == "allow"


def _decisions(
    service: AccessService, clock: FakeClock
) -> list[tuple[str, Callable[[], str | None], str, str]]:
    """(request id, header, action, resource) covering every outcome check() audits."""
    service.create_principal(name="dave")
    service.grant(principal="dave", action="model:predict", resource="digits")
    good = service.issue_token(principal="dave", expires_in=HOUR)
    expired = service.issue_token(principal="dave", expires_in=timedelta(seconds=1)).token
    revoked = service.issue_token(principal="dave", expires_in=HOUR)
    service.revoke_token(token_id=revoked.token_id)
    service.create_principal(name="gone", roles=["predictor"])
    disabled = service.issue_token(principal="gone", expires_in=HOUR).token
    service.disable_principal(name="gone")
    clock.advance(timedelta(seconds=2))

    def bearer(token: str) -> Callable[[], str | None]:
        return lambda: f"Bearer {token}"

    return [
        ("none", lambda: None, "model:predict", "digits"),
        ("malformed", lambda: "Bearer nope", "model:predict", "digits"),
        ("wrong-secret", bearer(f"ih_{good.token_id}_{'B' * 43}"), "model:predict", "digits"),
        ("expired", bearer(expired), "model:predict", "digits"),
        ("revoked", bearer(revoked.token), "model:predict", "digits"),
        ("disabled", bearer(disabled), "model:predict", "digits"),
        ("forbidden", bearer(good.token), "model:explain", "digits"),
        ("bad-resource", bearer(good.token), "model:predict", "../etc"),
        ("ok-1", bearer(good.token), "model:predict", "digits"),
        ("ok-2", bearer(good.token), "model:predict", "digits"),
        ("limited", bearer(good.token), "model:predict", "digits"),
    ]


def test_every_outcome_is_audited_exactly_as_check_does(
    service: AccessService, engine: Engine, clock: FakeClock
) -> None:
    cases = _decisions(service, clock)

    def run(call: Callable[..., Any]) -> list[int]:
        statuses = []
        for request_id, header, action, resource in cases:
            try:
                call(header(), action=action, resource=resource, request_id=request_id)
                statuses.append(200)
            except InhouseError as exc:
                statuses.append(exc.status_code)
        return statuses

    before = len(audit_rows(engine))
    # Burst 4: the 403 and 422 are charged too (the limit comes before authorizing).
    limiter = RateLimiter(1.0, 4, clock=lambda: 0.0)
    via_check = run(lambda h, **kw: service.check(h, rate_limiter=limiter, **kw))
    middle = len(audit_rows(engine))
    with make(service, rate_limiter=RateLimiter(1.0, 4, clock=lambda: 0.0)) as fast:
        via_fast = run(fast.authorize)
        assert len(audit_rows(engine)) == middle  # queued, not written yet
        assert fast.flush() == len(cases)
    assert via_check == via_fast == [401] * 6 + [403, 422, 200, 200, 429]
    rows = audit_rows(engine)

    def fields(r: AuditRecord) -> tuple[Any, ...]:
        return (r.principal, r.action, r.resource, r.outcome, r.request_id, r.detail)

    assert [fields(r) for r in rows[middle:]] == [fields(r) for r in rows[before:middle]]
    assert [r.principal for r in rows[middle:]][:6] == ["-", "-", "-", "dave", "dave", "gone"]
    assert service.audit.verify().ok


def test_async_authorize_reads_in_a_thread_only_on_a_miss(
    fast: RequestAuthorizer, alice: str, queries: QueryCounter
) -> None:
    async def twice() -> list[str]:
        first = await fast.authorize_async(alice, request_id="a1", **PREDICT)
        second = await fast.authorize_async(alice, request_id="a2", **PREDICT)
        return [first.name, second.name]

    assert asyncio.run(twice()) == ["alice", "alice"]
    assert queries.n == 0  # the miss was read on a worker thread, the hit from memory
    with pytest.raises(AuthenticationError):
        asyncio.run(fast.authorize_async("Bearer nope", request_id="a3", **PREDICT))
    assert fast.queue.pending == 3


def test_ttl_zero_reads_every_time(service: AccessService, alice: str) -> None:
    counter = QueryCounter(service._engine)
    try:
        with make(service, cache_ttl_s=0) as fast:
            for i in range(3):
                counter.n = 0
                fast.authorize(alice, request_id=f"r{i}", **PREDICT)
                assert counter.n > 0
    finally:
        counter.remove()


def test_rate_limit_charged_after_authentication(service: AccessService, alice: str) -> None:
    limiter = RateLimiter(1.0, 1, clock=lambda: 0.0)
    with make(service, rate_limiter=limiter) as fast:
        for i in range(3):  # unauthenticated callers never create or drain buckets
            with pytest.raises(AuthenticationError):
                fast.authorize(None, request_id=f"anon{i}", **PREDICT)
        assert len(limiter) == 0
        fast.authorize(alice, request_id="first", **PREDICT)
        with pytest.raises(RateLimitedError):
            fast.authorize(alice, request_id="second", **PREDICT)


def test_closed_authorizer_refuses(service: AccessService, alice: str) -> None:
    fast = make(service)
    fast.authorize(alice, request_id="r1", **PREDICT)
    fast.close()  # writes what was queued
    assert service.audit.tail(1)[0].request_id == "r1"
    with pytest.raises(UnavailableError, match="audit log unavailable"):
        fast.authorize(alice, request_id="r2", **PREDICT)
    fast.close()  # idempotent


def test_measure_reports_both_paths(service: AccessService) -> None:
    result = measure(service, n=40)
    assert result["n"] == 40
    for key in ("cached_p50_us", "cached_p99_us", "check_p50_us", "check_p99_us"):
        assert result[key] > 0
    assert result["cached_p50_us"] < result["check_p50_us"]
    assert service.audit.verify().ok
