"""The per-token rate limiter: token buckets driven by a fake clock."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from inhouse.access import AccessService, Principal
from inhouse.access.ratelimit import RateLimiter
from inhouse.errors import (
    AuthenticationError,
    ConfigError,
    PermissionDeniedError,
    RateLimitedError,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_burst_then_refused_then_refilled() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    for _ in range(3):
        limiter.check("tok")
    with pytest.raises(RateLimitedError) as refused:
        limiter.check("tok")
    err = refused.value
    assert err.status_code == 429 and err.code == "rate_limited"
    assert err.retry_after_s == pytest.approx(0.5)
    assert "2 requests/s" in err.message and "burst 3" in err.message
    assert "\n" not in err.message
    clock.t += 0.25  # half a token: still refused, and the wait shrinks
    with pytest.raises(RateLimitedError) as again:
        limiter.check("tok")
    assert again.value.retry_after_s == pytest.approx(0.25)
    clock.t += 0.25
    limiter.check("tok")
    with pytest.raises(RateLimitedError):
        limiter.check("tok")
    clock.t += 3600  # a long idle refills only up to the burst
    for _ in range(3):
        limiter.check("tok")
    with pytest.raises(RateLimitedError):
        limiter.check("tok")


def test_refusals_do_not_consume() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, clock=clock)
    limiter.check("k")
    for _ in range(50):
        with pytest.raises(RateLimitedError):
            limiter.check("k")
    clock.t += 1.0
    limiter.check("k")


def test_keys_are_independent() -> None:
    limiter = RateLimiter(1.0, 2, clock=Clock())
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(RateLimitedError):
        limiter.check("a")
    limiter.check("b")
    limiter.check("b")
    with pytest.raises(RateLimitedError):
        limiter.check("b")


def test_clock_stepping_back_does_not_drain_or_fill() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, clock=clock)
    limiter.check("k")
    clock.t -= 100
    with pytest.raises(RateLimitedError) as exc:
        limiter.check("k")
    assert exc.value.retry_after_s == pytest.approx(1.0)


def test_memory_is_bounded_least_recently_used_first() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, clock=clock, max_keys=3)
    for key in ("a", "b", "c"):
        limiter.check(key)
    with pytest.raises(RateLimitedError):
        limiter.check("a")  # 'a' is now the most recently used
    limiter.check("d")  # evicts 'b', the least recently used
    assert len(limiter) == 3
    with pytest.raises(RateLimitedError):
        limiter.check("a")  # still tracked, still empty
    limiter.check("b")  # forgotten: starts with a full bucket again (evicts 'c')
    for i in range(1000):
        limiter.check(f"k{i}")
    assert len(limiter) == 3


def test_thread_safe_under_contention() -> None:
    limiter = RateLimiter(1.0, 100, clock=Clock())  # the clock never moves
    allowed: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        n = 0
        for _ in range(100):
            try:
                limiter.check("shared")
                n += 1
            except RateLimitedError:
                pass
        with lock:
            allowed.append(n)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 100


@pytest.mark.parametrize(
    ("rate", "burst", "max_keys"),
    [
        (0, 1, 1),
        (-1.0, 1, 1),
        (float("inf"), 1, 1),
        (float("nan"), 1, 1),
        (1.0, 0, 1),
        (1.0, 1, 0),
        (1.0, 1.5, 1),
        (True, 1, 1),
        ("5", 1, 1),
    ],
)
def test_bad_settings_refused(rate: float, burst: int, max_keys: int) -> None:
    with pytest.raises(ConfigError):
        RateLimiter(rate, burst, max_keys=max_keys)


def test_check_charges_the_token_and_audits_the_refusal(service: AccessService) -> None:
    service.create_principal(name="app", kind="service", roles=["service"])
    issued = service.issue_token(principal="app", expires_in=timedelta(hours=1))
    other = service.issue_token(principal="app", expires_in=timedelta(hours=1))
    limiter = RateLimiter(1.0, 2, clock=Clock())

    def call(token: str, resource: str = "digits") -> Principal:
        return service.check(
            "Bearer " + token,
            action="model:predict",
            resource=resource,
            request_id="r",
            rate_limiter=limiter,
        )

    assert call(issued.token).token_id == issued.token_id
    with pytest.raises(PermissionDeniedError):
        service.check(
            "Bearer " + issued.token,
            action="model:explain",
            resource="digits",
            request_id="r",
            rate_limiter=limiter,
        )  # a refused request still costs a token
    with pytest.raises(RateLimitedError):
        call(issued.token)
    last = service.audit.tail(1)[0]
    assert last.outcome == "deny" and last.detail is not None
    assert f"token={issued.token_id} rate_limited" in last.detail
    call(other.token)  # each token has its own bucket
    with pytest.raises(AuthenticationError):  # no bucket is charged before authentication
        service.check(
            None, action="model:predict", resource="d", request_id=None, rate_limiter=limiter
        )
    assert len(limiter) == 2
