"""Issue #16, Medium 6: unauthenticated requests must not set the database and audit cost.

Before the fix every anonymous request with a token-shaped credential made one database
read and every refusal one audit row (300 requests: 300 reads, 300 rows), nothing limited
them before authentication, and their audit rows could fill the queue until authenticated
callers got 503. On that code these tests fail: the repeated bad token is read 300 times,
300 rows are written, ``RequestAuthorizer`` takes no ``preauth`` budget nor ``client``, and
the small queue below refuses the authenticated caller with 503.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select

from inhouse.access import ACCESS_TABLES, AccessService, PreAuthLimiter, RequestAuthorizer
from inhouse.access import admin as access_admin
from inhouse.access.failures import FailureAggregator
from inhouse.access.records import AuditRecord
from inhouse.access.tokens import new_token
from inhouse.db import Base, session_scope
from inhouse.errors import AuthenticationError, InhouseError, RateLimitedError

HOUR = timedelta(hours=1)
PREDICT = {"action": "model:predict", "resource": "digits"}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = create_engine(f"sqlite:///{tmp_path / 'meta.db'}", connect_args={"timeout": 10})
    Base.metadata.create_all(eng, tables=ACCESS_TABLES)
    yield eng
    eng.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(engine: Engine, clock: Clock) -> AccessService:
    return AccessService(engine=engine, pepper=b"s" * 32, clock=clock)


@pytest.fixture
def reads(service: AccessService, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Token ids read from the database (each call of verify_token is one read)."""
    seen: list[str] = []
    real = service.verify_token

    def counted(parsed: Any) -> Any:
        seen.append(parsed.token_id)
        return real(parsed)

    monkeypatch.setattr(service, "verify_token", counted)
    return seen


@pytest.fixture
def alice(service: AccessService) -> str:
    service.create_principal(name="alice")
    service.grant(principal="alice", action="model:predict", resource="digits")
    return f"Bearer {service.issue_token(principal='alice', expires_in=HOUR).token}"


def rows(engine: Engine) -> list[AuditRecord]:
    with session_scope(engine) as session:
        return list(session.scalars(select(AuditRecord).order_by(AuditRecord.id)))


def status(call: Any) -> int:
    try:
        call()
    except InhouseError as exc:
        return exc.status_code
    return 200


def random_bearer() -> str:
    return f"Bearer {new_token()[1]}"


def test_300_anonymous_requests_cost_one_read_and_a_few_audit_rows(
    service: AccessService, engine: Engine, clock: Clock, reads: list[str]
) -> None:
    bad = random_bearer()  # well formed, unknown: the expensive kind
    before = len(rows(engine))
    with RequestAuthorizer(service, flush_interval_s=3600) as fast:  # the defaults
        for i in range(300):
            header = bad if i % 2 else None
            with pytest.raises(AuthenticationError):
                fast.authorize(header, request_id=f"anon-{i}", client="10.0.0.9", **PREDICT)
        assert len(reads) == 1  # the refusal is remembered (for up to 1 s)
        fast.flush()
        assert len(rows(engine)) - before == 2  # the first of each kind, on its own
        clock.advance(1.0)
        with pytest.raises(AuthenticationError):
            fast.authorize(bad, request_id="later", client="10.0.0.9", **PREDICT)
        assert len(reads) == 2  # remembered 1 s at most, then read again
    written = rows(engine)[before:]
    assert len(written) == 4  # + one summary per kind when the authorizer closes
    assert sum(_repeated(r.detail)[0] for r in written if r.request_id is None) == 301 - 2
    assert service.audit.verify().ok


def _repeated(detail: str | None) -> tuple[int, str, str]:
    match = re.search(r"repeated: (\d+) more .* first=(\S+) last=(\S+)", detail or "")
    assert match, detail
    return int(match.group(1)), match.group(2), match.group(3)


def test_a_flood_of_fresh_tokens_is_limited_before_the_database(
    service: AccessService, engine: Engine, clock: Clock, reads: list[str], alice: str
) -> None:
    limiter = PreAuthLimiter(
        client_rate_per_s=1.0,
        client_burst=5,
        global_rate_per_s=1.0,
        global_burst=20,
        clock=lambda: 0.0,
    )
    with RequestAuthorizer(service, preauth=limiter, flush_interval_s=3600) as fast:
        fast.authorize(alice, request_id="warm", client="10.0.0.1", **PREDICT)
        reads.clear()
        statuses = [
            status(
                lambda: fast.authorize(
                    random_bearer(), request_id=f"f{i}", client="10.0.0.66", **PREDICT
                )
            )
            for i in range(300)
        ]
        assert statuses == [401] * 5 + [429] * 295
        assert len(reads) == 5  # the 429s were refused before any database work
        # The same address with a token this replica knows is never charged nor throttled.
        for i in range(50):
            fast.authorize(alice, request_id=f"ok{i}", client="10.0.0.66", **PREDICT)
        # A stale (past the 1 s TTL) but known token is read again, uncharged.
        clock.advance(2.0)
        fast.authorize(alice, request_id="refresh", client="10.0.0.66", **PREDICT)
        # A new valid token gives its charge back: the others keep their whole budget.
        service.create_principal(name="bob", roles=["predictor"])
        for i in range(10):
            bob = f"Bearer {service.issue_token(principal='bob', expires_in=HOUR).token}"
            fast.authorize(bob, request_id=f"bob{i}", client="10.0.0.2", **PREDICT)
        fast.flush()
    audited = rows(engine)
    limited = [r for r in audited if "rate limited before authentication" in (r.detail or "")]
    assert len(limited) == 2  # the first 429 on its own, then one summary for 294 more
    assert _repeated(limited[1].detail)[0] == 294
    denied = [r for r in audited if r.outcome == "deny"]
    assert len(denied) == 4  # 401 and 429: each kind once on its own, then one summary
    assert [_repeated(r.detail)[0] for r in denied if r.request_id is None] == [4, 294]
    served = [r for r in audited if r.outcome == "allow" and r.action == "model:predict"]
    assert len(served) == 62


def test_the_global_budget_holds_when_every_request_has_a_new_address(
    service: AccessService, reads: list[str], alice: str
) -> None:
    limiter = PreAuthLimiter(
        client_rate_per_s=1.0,
        client_burst=5,
        global_rate_per_s=1.0,
        global_burst=20,
        clock=lambda: 0.0,
    )
    with RequestAuthorizer(service, preauth=limiter, flush_interval_s=3600) as fast:
        fast.authorize(alice, request_id="warm", **PREDICT)
        reads.clear()
        statuses = [
            status(
                lambda: fast.authorize(
                    random_bearer(),
                    request_id=f"g{i}",
                    client=f"10.1.{i // 250}.{i % 250}",
                    **PREDICT,
                )
            )
            for i in range(300)
        ]
        assert statuses == [401] * 20 + [429] * 280 and len(reads) == 20
        assert fast.authorize(alice, request_id="still", client=None, **PREDICT).name == "alice"


def test_a_failed_auth_flood_never_makes_authenticated_callers_get_503(
    service: AccessService, alice: str
) -> None:
    fast = RequestAuthorizer(service, flush_interval_s=3600, max_pending=20)
    try:
        fast.authorize(alice, request_id="warm", **PREDICT)
        for i in range(300):  # a different address and credential each time
            with pytest.raises(AuthenticationError):
                fast.authorize(random_bearer(), request_id=f"x{i}", client=f"10.2.0.{i}", **PREDICT)
        assert fast.queue.pending <= 10  # refusals may fill half of max_pending at most
        for i in range(9):
            fast.authorize(alice, request_id=f"ok{i}", **PREDICT)
    finally:
        fast.close()


def test_the_aggregated_entry_carries_the_count_and_first_and_last_times(
    service: AccessService, engine: Engine, clock: Clock
) -> None:
    before = len(rows(engine))
    with RequestAuthorizer(service, flush_interval_s=3600, failure_window_s=10) as fast:
        start = clock.now
        for i in range(50):
            with pytest.raises(AuthenticationError):
                fast.authorize("Basic x", request_id=f"b{i}", client="192.0.2.7", **PREDICT)
            clock.advance(0.1)
        last = clock.now - timedelta(seconds=0.1)
        fast.flush()
        first_row = rows(engine)[before:]
        assert len(first_row) == 1 and first_row[0].request_id == "b0"
        assert first_row[0].detail.endswith("client=192.0.2.7")
        clock.advance(10)  # the window is over: the next flush writes the summary
        fast.flush()
        summary = rows(engine)[-1]
    count, first, last_ts = _repeated(summary.detail)
    assert count == 49 and summary.outcome == "deny" and summary.request_id is None
    assert first == _iso(start + timedelta(seconds=0.1)) and last_ts == _iso(last)
    assert "client=192.0.2.7" in summary.detail and "reason=malformed" in summary.detail
    assert (summary.principal, summary.action, summary.resource) == ("-", *PREDICT.values())
    assert len(rows(engine)) - before == 2 and service.audit.verify().ok


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_newly_issued_token_works_within_the_refusal_ttl(
    service: AccessService, clock: Clock, reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    service.create_principal(name="carol", roles=["predictor"])
    parsed, plaintext = new_token()
    with RequestAuthorizer(service, flush_interval_s=3600) as fast:
        # Sent before it exists (a client racing its own issuance): refused, remembered.
        with pytest.raises(AuthenticationError):
            fast.authorize(f"Bearer {plaintext}", request_id="early", **PREDICT)
        monkeypatch.setattr(access_admin, "new_token", lambda: (parsed, plaintext))
        service.issue_token(principal="carol", expires_in=HOUR)
        clock.advance(1.0)  # the refusal is remembered 1 s (the revocation TTL) at most
        assert fast.authorize(f"Bearer {plaintext}", request_id="r", **PREDICT).name == "carol"
        # Any other new token works at once: refusals are per credential.
        monkeypatch.undo()
        other = service.issue_token(principal="carol", expires_in=HOUR).token
        assert fast.authorize(f"Bearer {other}", request_id="o", **PREDICT).name == "carol"
        # A wrong secret for a real token id never locks out its holder.
        forged = f"Bearer ih_{parsed.token_id}_{secrets.token_urlsafe(32)}"
        fast.invalidate()
        with pytest.raises(AuthenticationError):
            fast.authorize(forged, request_id="forged", **PREDICT)
        assert fast.authorize(f"Bearer {plaintext}", request_id="r2", **PREDICT).name == "carol"


def test_invalidate_forgets_refusals_at_once(service: AccessService, reads: list[str]) -> None:
    service.create_principal(name="dan", roles=["predictor"])
    parsed, plaintext = new_token()
    with RequestAuthorizer(service, flush_interval_s=3600) as fast:
        with pytest.raises(AuthenticationError):
            fast.authorize(f"Bearer {plaintext}", request_id="early", **PREDICT)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(access_admin, "new_token", lambda: (parsed, plaintext))
            service.issue_token(principal="dan", expires_in=HOUR)
        with pytest.raises(AuthenticationError):
            fast.authorize(f"Bearer {plaintext}", request_id="remembered", **PREDICT)
        fast.invalidate(parsed.token_id)  # an in-process issuer need not wait the 1 s
        assert fast.authorize(f"Bearer {plaintext}", request_id="now", **PREDICT).name == "dan"
    assert reads == [parsed.token_id] * 2


def test_async_path_refuses_a_flood_on_the_loop_before_any_read(
    service: AccessService, reads: list[str], alice: str
) -> None:
    limiter = PreAuthLimiter(client_burst=3, clock=lambda: 0.0)
    service.create_principal(name="erin", roles=["predictor"])
    erin = f"Bearer {service.issue_token(principal='erin', expires_in=HOUR).token}"

    async def call(header: str, client: str) -> int:
        try:
            await fast.authorize_async(header, request_id="a", client=client, **PREDICT)
        except InhouseError as exc:
            return exc.status_code
        return 200

    async def scenario() -> list[int]:
        # A new valid token is charged, then given its charge back: the budget stays 3.
        assert await call(alice, "10.3.0.1") == 200
        flood = [await call(random_bearer(), "10.3.0.1") for _ in range(40)]
        assert await call(alice, "10.3.0.1") == 200  # known: never charged
        # A token this replica has not seen, from the flooding address, waits for the
        # address's budget to refill (Retry-After); from another address it is served.
        assert await call(erin, "10.3.0.1") == 429
        assert await call(erin, "10.3.0.2") == 200
        return flood

    with RequestAuthorizer(service, preauth=limiter, flush_interval_s=3600) as fast:
        statuses = asyncio.run(scenario())
    assert statuses == [401] * 3 + [429] * 37
    assert len(reads) == 1 + 3 + 1  # alice, the 3 within budget, erin


def test_retry_after_and_message_of_the_pre_auth_429(service: AccessService) -> None:
    limiter = PreAuthLimiter(client_rate_per_s=2.0, client_burst=1, clock=lambda: 0.0)
    with RequestAuthorizer(service, preauth=limiter, flush_interval_s=3600) as fast:
        with pytest.raises(AuthenticationError):
            fast.authorize(None, request_id="1", client="10.4.0.1", **PREDICT)
        with pytest.raises(RateLimitedError) as caught:
            fast.authorize(None, request_id="2", client="10.4.0.1", **PREDICT)
    err = caught.value
    assert err.status_code == 429 and err.retry_after_s == pytest.approx(0.5)
    assert "10.4.0.1" in err.message and "\n" not in err.message


def test_summaries_mark_varying_resources_wait_for_room_and_bound_the_kinds(
    clock: Clock,
) -> None:
    agg = FailureAggregator(clock=clock, window_s=5, max_keys=2)
    assert agg.opens("10.5.0.1", "-", "invalid token")
    assert not agg.opens("10.5.0.1", "-", "invalid token")  # already open: count it
    for resource in ("a", "b"):
        agg.count(
            "10.5.0.1",
            "-",
            "invalid token",
            action="model:predict",
            resource=resource,
            detail=f"bad token {resource}",
        )
    clock.advance(5)
    assert agg.drain(0) == [] and len(agg) == 1  # no room in the queue: keeps counting
    agg.count(
        "10.5.0.1", "-", "invalid token", action="model:predict", resource="a", detail="bad token a"
    )
    [event] = agg.drain(10)
    assert (event.action, event.resource, event.outcome) == ("model:predict", "*", "deny")
    assert _repeated(event.detail)[0] == 3 and event.detail.endswith("last: bad token a")
    assert len(agg) == 0
    # More kinds than max_keys at once: the rest are counted together under client "*".
    assert agg.opens("10.5.0.2", "-", "invalid token")
    assert agg.opens("10.5.0.3", "-", "invalid token")
    assert not agg.opens("10.5.0.4", "-", "invalid token")
    agg.count("10.5.0.4", "-", "invalid token", action="x", resource="y", detail="z")
    agg.close()
    [overflow] = agg.drain(10)
    assert "client=*" in overflow.detail and _repeated(overflow.detail)[0] == 1
