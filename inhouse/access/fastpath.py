"""The serving fast path of access control: cached token checks, batched audit writes.

:meth:`AccessService.check` reads the database and writes one audit transaction per call
(about 1.7 ms, serialised on the audit chain). :class:`RequestAuthorizer` makes the same
decisions with the same audit entries at a few microseconds per request:

- **Tokens are cached** for ``cache_ttl_s`` by token id: the stored keyed hash of the
  secret (never the secret), the principal with its roles and grants, and the expiry. A
  presented secret is checked against that hash with :func:`hmac.compare_digest` on every
  call; a wrong secret is refused without touching the cache entry, so guessing cannot
  evict a valid token nor make its holder hit the database.
- **Expiry is checked on every call** against the clock, so an expired token fails at once.
- **Revocation, disabling a principal and grant or role changes take effect within**
  ``cache_ttl_s`` (1 s by default) in each process holding an authorizer, not at once; call
  :meth:`RequestAuthorizer.invalidate` to drop entries sooner in this process.
- **Every decision is queued** (allow, and deny for 401, 403, 422 and 429) and written by
  an :class:`~inhouse.access.auditqueue.AuditQueue` thread, many per transaction. When
  the database is unavailable and ``max_pending`` decisions wait, requests are refused with
  503 "audit log unavailable" (fail closed). Decisions queued when the process dies
  unflushed are lost (at most ``flush_interval_s`` of them while the database is healthy).

A cache miss (first use of a token, then once per ``cache_ttl_s``) reads the database in
the calling thread; :meth:`RequestAuthorizer.authorize_async` keeps that off an event loop.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from inhouse.access.auditqueue import FLUSH_AT, AuditQueue
from inhouse.access.permissions import Principal
from inhouse.access.ratelimit import RateLimiter
from inhouse.access.service import (
    ANONYMOUS,
    REFUSALS,
    AccessService,
    AuthFailure,
    admit,
    allowed_detail,
    parse_header,
    refused_detail,
)
from inhouse.access.tokens import ParsedToken
from inhouse.errors import ConfigError, ConflictError, UnavailableError

MAX_CACHED_TOKENS = 10_000


@dataclass(frozen=True)
class _Cached:
    principal: Principal
    expires_at: datetime
    cached_at: datetime
    secret_hash: str = field(repr=False)


class RequestAuthorizer:
    """Authorize requests like :meth:`AccessService.check`, from memory, auditing in batches.

    Thread-safe; a cached :meth:`authorize` takes a few microseconds and no database access,
    so it may run on an event loop. Use it as a context manager or call :meth:`close`.

    Args:
        service: the access service whose database, pepper and clock are used.
        cache_ttl_s: how long a token's database state is trusted (bounds how late a
            revocation or grant change takes effect); 0 disables caching.
        flush_interval_s: the longest a decision waits before its audit transaction.
        max_pending: decisions kept while the database is unavailable; then 503.
        rate_limiter: charged per token after authentication, as in ``check``.
    """

    def __init__(
        self,
        service: AccessService,
        *,
        cache_ttl_s: float = 1.0,
        flush_interval_s: float = 0.05,
        max_pending: int = 10_000,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        if not cache_ttl_s >= 0:
            raise ConfigError(f"cache_ttl_s {cache_ttl_s!r} must be >= 0 seconds")
        self._service = service
        self._clock = service.clock
        self._ttl = timedelta(seconds=cache_ttl_s)
        self._limiter = rate_limiter
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self.queue = AuditQueue(
            service.audit,
            clock=service.clock,
            flush_interval_s=flush_interval_s,
            max_pending=max_pending,
            flush_at=min(FLUSH_AT, max_pending),
        )

    def authorize(
        self, header: str | None, *, action: str, resource: str, request_id: str
    ) -> Principal:
        """Authenticate, rate-limit and authorize ``action`` on ``resource``; queue the audit.

        Raises:
            AuthenticationError: missing, malformed, unknown, wrong, expired or revoked
                token, or a disabled principal (401).
            RateLimitedError: over the rate limiter's rate (429).
            PermissionDeniedError: authenticated but not allowed (403).
            InvalidInputError: unknown action or invalid resource name (422).
            UnavailableError: the audit queue is full or closed, or the database could not
                be read on a cache miss (503, fail closed).
        """
        return self._decide(header, action, resource, request_id, None)

    async def authorize_async(
        self, header: str | None, *, action: str, resource: str, request_id: str
    ) -> Principal:
        """:meth:`authorize` for an event loop: cache hits inline, misses in a thread."""
        try:
            return self._decide(header, action, resource, request_id, _Miss)
        except _Miss:
            return await asyncio.to_thread(
                self.authorize, header, action=action, resource=resource, request_id=request_id
            )

    def invalidate(self, token_id: str | None = None) -> None:
        """Forget one token (or all): its next use reads the database."""
        with self._lock:
            if token_id is None:
                self._cache.clear()
            else:
                self._cache.pop(token_id, None)

    def flush(self) -> int:
        """Write every queued decision now, in one transaction (raises UnavailableError)."""
        return self.queue.flush()

    def close(self) -> None:
        """Stop the flush thread and write what is left (raises UnavailableError)."""
        self.queue.close()

    def __enter__(self) -> RequestAuthorizer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _decide(
        self,
        header: str | None,
        action: str,
        resource: str,
        request_id: str,
        on_miss: type[Exception] | None,
    ) -> Principal:
        self.queue.check_open()  # refuse before any work when decisions cannot be recorded
        put = self.queue.put
        try:
            parsed = parse_header(header)
            principal = self._principal(parsed, on_miss)
        except AuthFailure as failure:
            put(failure.principal, action, resource, "deny", request_id, failure.detail)
            raise failure.error from None
        try:
            admit(principal, action, resource, self._limiter)
        except REFUSALS as exc:
            put(
                principal.name, action, resource, "deny", request_id, refused_detail(principal, exc)
            )
            raise
        put(principal.name, action, resource, "allow", request_id, allowed_detail(principal))
        return principal

    def _fresh(self, token_id: str, now: datetime) -> _Cached | None:
        cached = self._cache.get(token_id)
        # abs(): a wall clock stepping back cannot make an entry live longer than the TTL.
        if cached is not None and abs(now - cached.cached_at) < self._ttl:
            return cached
        return None

    def _principal(self, parsed: ParsedToken, on_miss: type[Exception] | None) -> Principal:
        cached = self._fresh(parsed.token_id, self._clock())
        if cached is None:
            if on_miss is not None:
                raise on_miss
            cached = self._load(parsed)
        if not self._service.secret_matches(parsed, cached.secret_hash):
            raise AuthFailure("invalid token", ANONYMOUS, f"bad token {parsed.token_id}")
        if cached.expires_at <= self._clock():
            who = cached.principal.name
            raise AuthFailure("token expired", who, f"expired token {parsed.token_id}")
        return cached.principal

    def _load(self, parsed: ParsedToken) -> _Cached:
        token_id = parsed.token_id
        with self._lock:
            gate = self._loading.setdefault(token_id, threading.Lock())
        try:
            with gate:  # one database read per token at a time; the others reuse it
                cached = self._fresh(token_id, self._clock())
                if cached is not None:
                    return cached
                return self._read(parsed)
        finally:
            with self._lock:
                if self._loading.get(token_id) is gate:
                    del self._loading[token_id]

    def _read(self, parsed: ParsedToken) -> _Cached:
        now = self._clock()
        try:
            verified = self._service.verify_token(parsed)
        except AuthFailure:
            self.invalidate(parsed.token_id)  # revoked, expired or disabled since cached
            raise
        except SQLAlchemyError as exc:
            raise UnavailableError(f"access database unavailable: {type(exc).__name__}") from exc
        cached = _Cached(verified.principal, verified.expires_at, now, verified.secret_hash)
        if self._ttl:
            with self._lock:
                if len(self._cache) >= MAX_CACHED_TOKENS and parsed.token_id not in self._cache:
                    del self._cache[next(iter(self._cache))]  # the oldest insertion
                self._cache[parsed.token_id] = cached
        return cached


class _Miss(Exception):
    """Internal: the token is not cached (authorize_async then reads in a thread)."""


def measure(service: AccessService, n: int = 2000) -> dict[str, Any]:
    """Time ``n`` cached :meth:`RequestAuthorizer.authorize` calls against ``n`` checks.

    Creates (or reuses) the principal ``bench-fastpath`` with ``model:predict`` on
    ``bench`` and a one-hour token in ``service``'s database, and appends about ``3 n`` audit
    entries there: run it on a scratch database. Times are microseconds per call in this
    thread; ``flush_us_per_entry`` is the background cost of the batched audit write, per
    entry, for one batch of ``n - 1``.
    """
    for setup in (
        lambda: service.create_principal(name="bench-fastpath", actor="bench"),
        lambda: service.grant(principal="bench-fastpath", action="model:predict", resource="bench"),
    ):
        try:
            setup()
        except ConflictError:
            pass  # already there from an earlier run
    token = service.issue_token(
        principal="bench-fastpath", expires_in=timedelta(hours=1), actor="bench"
    ).token
    header, kw = f"Bearer {token}", {"action": "model:predict", "resource": "bench"}

    def timed(call: Any) -> list[float]:
        out = []
        for i in range(n):
            start = time.perf_counter_ns()
            call(header, request_id=f"bench-{i}", **kw)
            out.append((time.perf_counter_ns() - start) / 1000)
        return out

    check = timed(service.check)
    # The authorizer as served: its flush thread runs (and competes for the GIL) meanwhile.
    with RequestAuthorizer(service) as fast:
        fast.authorize(header, request_id="bench-warm", **kw)
        cached = timed(fast.authorize)
    # The background cost per entry: one batch of n - 1, timed apart.
    queue = AuditQueue(
        service.audit, clock=service.clock, flush_interval_s=3600, max_pending=n, flush_at=n
    )
    for i in range(n - 1):
        queue.put("bench-fastpath", "model:predict", "bench", "allow", f"b-{i}", "token=x")
    start = time.perf_counter()
    written = queue.flush()
    flush_s = time.perf_counter() - start
    queue.close()
    result: dict[str, Any] = {"n": n}
    for name, samples in (("cached", cached), ("check", check)):
        cuts = statistics.quantiles(samples, n=100)
        result[f"{name}_p50_us"] = round(statistics.median(samples), 1)
        result[f"{name}_p99_us"] = round(cuts[98], 1)
    result["speedup_p50"] = round(result["check_p50_us"] / result["cached_p50_us"], 1)
    result["flush_us_per_entry"] = round(flush_s * 1e6 / max(written, 1), 1)
    return result
