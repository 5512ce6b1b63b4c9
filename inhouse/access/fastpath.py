"""The serving fast path of access control: cached token checks, batched audit writes.

:meth:`AccessService.check` reads the database and writes one audit transaction per call
(about 1.7 ms, serialised on the audit chain). :class:`RequestAuthorizer` makes the same
decisions at a few microseconds per request:

- **Tokens are cached** for ``cache_ttl_s`` by token id (:mod:`inhouse.access.tokencache`):
  the stored keyed hash of the secret (never the secret), the principal with its roles and
  grants, and the expiry. A presented secret is checked against that hash on every call; a
  wrong secret is refused from memory without touching the entry, so guessing cannot evict
  a valid token nor make its holder hit the database. Refused credentials are remembered
  for at most 1 s (a token issued meanwhile works at most that late).
- **Expiry is checked on every call** against the clock, so an expired token fails at once.
- **Revocation, disabling a principal and grant or role changes take effect within**
  ``cache_ttl_s`` (1 s by default) in each process holding an authorizer, not at once; call
  :meth:`RequestAuthorizer.invalidate` to drop entries sooner in this process.
- **Callers not authenticated yet are budgeted** with a
  :class:`~inhouse.access.preauth.PreAuthLimiter`: an attempt not authenticated from
  memory is charged to its client address and, when it needs a database read, to a global
  budget, before any database work (429 when spent); a token known to this process is
  never charged, and a valid one gives its charge back.
- **Every decision is audited**, queued and written by an
  :class:`~inhouse.access.auditqueue.AuditQueue` thread, many per transaction. Repeated
  refusals (401, and 429) are audited once per window (:mod:`inhouse.access.failures`): the
  first of a kind (client, principal, reason) on its own, the rest as one entry with their
  count and first and last times; they may fill only half the queue, so a flood of them
  never refuses anyone else. When the database is unavailable and ``max_pending``
  decisions wait, requests are refused with 503 "audit log unavailable" (fail closed).
  Decisions queued when the process dies unflushed are lost (at most ``flush_interval_s``
  of them while the database is healthy).

A cache miss (first use of a token, then once per ``cache_ttl_s``) reads the database in
the calling thread; :meth:`RequestAuthorizer.authorize_async` keeps that off an event loop.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from inhouse.access.auditqueue import FLUSH_AT, AuditQueue
from inhouse.access.failures import FailureAggregator
from inhouse.access.permissions import Principal
from inhouse.access.preauth import PreAuthLimiter
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
from inhouse.access.tokencache import CachedToken, TokenCache
from inhouse.access.tokens import ParsedToken
from inhouse.errors import ConfigError, RateLimitedError, UnavailableError

PREAUTH_LIMITED = "rate limited before authentication"


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
        preauth: charged per client address before authentication (None: no limit).
        failure_window_s: repeated refusals of one kind are audited as one entry per
            window of this length; 0 audits each one on its own.
    """

    def __init__(
        self,
        service: AccessService,
        *,
        cache_ttl_s: float = 1.0,
        flush_interval_s: float = 0.05,
        max_pending: int = 10_000,
        rate_limiter: RateLimiter | None = None,
        preauth: PreAuthLimiter | None = None,
        failure_window_s: float = 10.0,
    ) -> None:
        if not cache_ttl_s >= 0:
            raise ConfigError(f"cache_ttl_s {cache_ttl_s!r} must be >= 0 seconds")
        if not failure_window_s >= 0:
            raise ConfigError(f"failure_window_s {failure_window_s!r} must be >= 0 seconds")
        self._service = service
        self._clock = service.clock
        self._limiter = rate_limiter
        self._tokens = TokenCache(service, cache_ttl_s)
        self._preauth = preauth
        self._failures = (
            FailureAggregator(clock=service.clock, window_s=failure_window_s)
            if failure_window_s
            else None
        )
        self.queue = AuditQueue(
            service.audit,
            clock=service.clock,
            flush_interval_s=flush_interval_s,
            max_pending=max_pending,
            flush_at=min(FLUSH_AT, max_pending),
            source=None if self._failures is None else self._failures.drain,
        )

    def authorize(
        self,
        header: str | None,
        *,
        action: str,
        resource: str,
        request_id: str,
        client: str | None = None,
    ) -> Principal:
        """Authenticate, rate-limit and authorize ``action`` on ``resource``; queue the audit.

        ``client`` is the caller's address (None when unknown), for the limit before
        authentication and the audit of refusals.

        Raises:
            AuthenticationError: missing, malformed, unknown, wrong, expired or revoked
                token, or a disabled principal (401).
            RateLimitedError: over the rate limiter's rate, or ``client`` over its budget
                for attempts not authenticated from memory (429).
            PermissionDeniedError: authenticated but not allowed (403).
            InvalidInputError: unknown action or invalid resource name (422).
            UnavailableError: the audit queue is full or closed, or the database could not
                be read on a cache miss (503, fail closed).
        """
        return self._decide(header, action, resource, request_id, client, False)

    async def authorize_async(
        self,
        header: str | None,
        *,
        action: str,
        resource: str,
        request_id: str,
        client: str | None = None,
    ) -> Principal:
        """:meth:`authorize` for an event loop: cache hits and refusals inline, database
        reads in a thread (after the limit before authentication, so a flood of unknown
        tokens does not queue up in the thread pool)."""
        try:
            return self._decide(header, action, resource, request_id, client, True)
        except _Miss as miss:
            return await asyncio.to_thread(
                self._decide, header, action, resource, request_id, client, False, miss.charged
            )

    def invalidate(self, token_id: str | None = None) -> None:
        """Forget one token (or all), and the refusals remembered for it: its next use
        reads the database."""
        self._tokens.invalidate(token_id)

    def flush(self) -> int:
        """Write every queued decision now, in one transaction (raises UnavailableError)."""
        return self.queue.flush()

    def close(self) -> None:
        """Stop the flush thread and write what is left, open refusal counts included
        (raises UnavailableError)."""
        if self._failures is not None:
            self._failures.close()
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
        client: str | None,
        defer: bool,
        charged: bool = False,
    ) -> Principal:
        self.queue.check_open()  # refuse before any work when decisions cannot be recorded
        try:
            principal = self._principal(header, client, defer, charged)
        except AuthFailure as failure:
            why = str(failure)
            self._refused(client, failure.principal, why, action, resource, request_id, failure)
            raise failure.error from None
        try:
            admit(principal, action, resource, self._limiter)
        except REFUSALS as exc:
            detail = refused_detail(principal, exc)
            if isinstance(exc, RateLimitedError):  # repeats by nature: counted, like 401s
                why = f"rate limited token {principal.token_id}"
                self._refused(client, principal.name, why, action, resource, request_id, detail)
            else:
                self.queue.put(principal.name, action, resource, "deny", request_id, detail)
            raise
        detail = allowed_detail(principal)
        self.queue.put(principal.name, action, resource, "allow", request_id, detail)
        return principal

    def _refused(
        self,
        client: str | None,
        who: str,
        reason: str,
        action: str,
        resource: str,
        request_id: str,
        why: AuthFailure | str,
    ) -> None:
        """Audit a refusal on its own when it is the first of its kind, else count it."""
        detail = why.detail if isinstance(why, AuthFailure) else why
        failures = self._failures
        if failures is None:
            self.queue.put(who, action, resource, "deny", request_id, detail)
            return
        seen = detail if client is None else f"{detail} client={client}"
        if failures.opens(client, who, reason):
            if self.queue.offer(who, action, resource, "deny", request_id, seen):
                return
        failures.count(client, who, reason, action=action, resource=resource, detail=detail)

    def _charge(self, client: str | None, *, read: bool) -> None:
        if self._preauth is None:
            return
        try:
            self._preauth.charge(client, read=read)
        except RateLimitedError as exc:
            failure = AuthFailure(PREAUTH_LIMITED, ANONYMOUS, f"{PREAUTH_LIMITED}: {exc.message}")
            failure.error = exc
            raise failure from None

    def _principal(
        self, header: str | None, client: str | None, defer: bool, charged: bool
    ) -> Principal:
        try:
            parsed = parse_header(header)
        except AuthFailure:
            self._charge(client, read=False)
            raise
        now = self._clock()
        known = self._tokens.known(parsed.token_id)  # fresh or stale: its hash never changes
        if known is not None:
            if not self._service.secret_matches(parsed, known.secret_hash):
                self._charge(client, read=False)
                raise AuthFailure("invalid token", ANONYMOUS, f"bad token {parsed.token_id}")
            if self._tokens.is_fresh(known, now):
                return _unexpired(known, parsed, now)
            # Stale, but the secret is right: a holder of a real token is never charged.
        else:
            refusal = self._tokens.refused(parsed, now)
            if refusal is not None:
                self._charge(client, read=False)
                raise AuthFailure(*refusal)
            if not charged:
                self._charge(client, read=True)
                charged = True
        if defer:
            raise _Miss(charged)
        try:
            cached = self._tokens.load(parsed)
        except UnavailableError:
            self._refund(client, charged)  # the database failed, not the caller
            raise
        if not self._service.secret_matches(parsed, cached.secret_hash):
            raise AuthFailure("invalid token", ANONYMOUS, f"bad token {parsed.token_id}")
        self._refund(client, charged)  # a real token: only failures spend the budget
        return _unexpired(cached, parsed, self._clock())

    def _refund(self, client: str | None, charged: bool) -> None:
        if charged and self._preauth is not None:
            self._preauth.refund(client, read=True)


def _unexpired(cached: CachedToken, parsed: ParsedToken, now: datetime) -> Principal:
    if cached.expires_at <= now:
        who = cached.principal.name
        raise AuthFailure("token expired", who, f"expired token {parsed.token_id}")
    return cached.principal


class _Miss(Exception):
    """Internal: the token is not cached (authorize_async then reads in a thread)."""

    def __init__(self, charged: bool) -> None:
        super().__init__()
        self.charged = charged
