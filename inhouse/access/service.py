"""AccessService: the check every HTTP route and CLI command makes before it acts.

A route calls :meth:`AccessService.check` with the raw ``Authorization`` header, the action
and the resource; it gets the :class:`~inhouse.access.permissions.Principal` back or an
error whose HTTP status :mod:`inhouse.errors` fixes: 401 for a missing, malformed, unknown,
expired or revoked token (or a disabled principal), 429 for a token over its rate (when a
:class:`~inhouse.access.ratelimit.RateLimiter` is passed), 403 for a missing permission. Each
decision is appended to the audit log before the method returns; if that write fails the
request is refused (503, fail closed). Administration lives in :mod:`inhouse.access.admin`.

The pieces of that check are public so the serving fast path
(:class:`~inhouse.access.fastpath.RequestAuthorizer`, which caches tokens and batches the
audit writes) makes the same decisions with the same audit details: :func:`parse_header`,
:meth:`AccessService.verify_token` (authentication without audit), :func:`admit` (rate
limit, then authorize) and :func:`allowed_detail` / :func:`refused_detail`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, or_, update
from sqlalchemy.exc import OperationalError

from inhouse.access.admin import AccessAdmin, load_principal
from inhouse.access.audit import AuditLog
from inhouse.access.auditentry import AuditEntry, Outcome
from inhouse.access.permissions import Principal, authorize
from inhouse.access.ratelimit import RateLimiter
from inhouse.access.records import PrincipalRecord, TokenRecord
from inhouse.access.tokens import ParsedToken, check_pepper, parse_authorization, verify_secret
from inhouse.db import session_scope, utcnow
from inhouse.errors import (
    AuthenticationError,
    InhouseError,
    InvalidInputError,
    PermissionDeniedError,
    RateLimitedError,
    UnavailableError,
)

ANONYMOUS = "-"
AUTHENTICATE = "auth:authenticate"
# last_used_at is refreshed at most this often, so most requests write only the audit entry.
LAST_USED_GRANULARITY = timedelta(seconds=60)


# What check() turns into a deny entry (and re-raises) once the caller is authenticated.
REFUSALS = (RateLimitedError, PermissionDeniedError, InvalidInputError)


class AuthFailure(Exception):
    """An authentication failure with what the audit entry needs (who, why).

    Attributes:
        error: the error to raise to the client: a 401, or the 429 of a limit applied
            before authentication.
        principal: the token's owner when the token was found, else ``"-"``.
        detail: the audit entry's detail (``unauthenticated: ...``).
    """

    def __init__(self, message: str, principal: str, detail: str) -> None:
        super().__init__(message)
        self.error: InhouseError = AuthenticationError(message)
        self.principal = principal
        self.detail = f"unauthenticated: {detail}"


@dataclass(frozen=True)
class VerifiedToken:
    """A token the database vouched for at one moment: whose, until when, its stored digest.

    ``secret_hash`` is the keyed hash stored for the token (never the secret): a cache
    holding this object checks a presented secret with :meth:`AccessService.secret_matches`.
    """

    principal: Principal
    expires_at: datetime
    secret_hash: str = field(repr=False)


def parse_header(header_value: str | None) -> ParsedToken:
    """Parse an ``Authorization`` header (raises :class:`AuthFailure`, anonymous)."""
    try:
        return parse_authorization(header_value)
    except AuthenticationError as exc:
        raise AuthFailure(exc.message, ANONYMOUS, exc.message) from None


def admit(
    principal: Principal, action: str, resource: str, rate_limiter: RateLimiter | None
) -> None:
    """Charge the rate limit of an authenticated principal's token, then authorize.

    Raises:
        RateLimitedError, PermissionDeniedError, InvalidInputError: as :meth:`check`.
    """
    if rate_limiter is not None:
        rate_limiter.check(principal.token_id or principal.name)
    authorize(principal, action, resource)


def allowed_detail(principal: Principal) -> str:
    """The detail of an ``allow`` entry: the token used."""
    return f"token={principal.token_id}"


def refused_detail(principal: Principal, exc: InhouseError) -> str:
    """The detail of a ``deny`` entry for an authenticated caller: token, code, message."""
    return f"{allowed_detail(principal)} {exc.code}: {exc.message}"


class AccessService(AccessAdmin):
    """Access control over the metadata database.

    Args:
        engine: the metadata database (tables of :mod:`inhouse.access.records` created).
        pepper: server secret of at least 32 bytes keying the token hashes
            (:func:`inhouse.access.tokens.load_or_create_pepper`); losing it voids all tokens.
        clock: returns the current aware UTC time; tests inject one.
        max_token_lifetime: the longest ``expires_in`` :meth:`issue_token` accepts.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        pepper: bytes,
        clock: Callable[[], datetime] = utcnow,
        max_token_lifetime: timedelta = timedelta(days=365),
    ) -> None:
        self._engine = engine
        self._pepper = check_pepper(pepper)
        self._clock = clock
        self._max_lifetime = max_token_lifetime
        self.audit = AuditLog(engine=engine, clock=clock)

    @property
    def clock(self) -> Callable[[], datetime]:
        """The clock every decision of this service is taken at (aware UTC)."""
        return self._clock

    def authenticate(self, header_value: str | None, *, request_id: str | None = None) -> Principal:
        """Resolve an ``Authorization`` header to a principal, auditing the decision.

        Raises:
            AuthenticationError: missing, malformed, unknown, expired or revoked token, or a
                disabled principal (401).
            UnavailableError: the audit entry could not be written (503).
        """
        try:
            principal = self._authenticate(header_value)
        except AuthFailure as failure:
            self._log(failure.principal, AUTHENTICATE, "-", "deny", request_id, failure.detail)
            raise failure.error from None
        self._log(principal.name, AUTHENTICATE, "-", "allow", request_id, allowed_detail(principal))
        return principal

    def check(
        self,
        header_value: str | None,
        *,
        action: str,
        resource: str,
        request_id: str | None,
        rate_limiter: RateLimiter | None = None,
    ) -> Principal:
        """Authenticate, rate-limit, authorize ``action`` on ``resource``, audit; return who.

        With ``rate_limiter``, the authenticated token id is charged before authorizing, so
        a refused request is audited as ``deny`` (not ``allow``) in the same single write.

        Raises:
            AuthenticationError: as :meth:`authenticate` (401).
            RateLimitedError: the token is over ``rate_limiter``'s rate (429).
            PermissionDeniedError: authenticated but not allowed (403).
            InvalidInputError: unknown action or invalid resource name (422).
            UnavailableError: the audit entry could not be written (503, fail closed).
        """
        try:
            principal = self._authenticate(header_value)
        except AuthFailure as failure:
            self._log(failure.principal, action, resource, "deny", request_id, failure.detail)
            raise failure.error from None
        try:
            admit(principal, action, resource, rate_limiter)
        except REFUSALS as exc:
            why = refused_detail(principal, exc)
            self._log(principal.name, action, resource, "deny", request_id, why)
            raise
        self._log(principal.name, action, resource, "allow", request_id, allowed_detail(principal))
        return principal

    def record(
        self,
        *,
        principal: str,
        action: str,
        resource: str,
        outcome: Outcome,
        request_id: str | None = None,
        detail: str | None = None,
    ) -> AuditEntry:
        """Append the outcome of a privileged action (a deploy, a key rotation) to the audit."""
        return self._log(principal, action, resource, outcome, request_id, detail)

    def _log(
        self,
        principal: str,
        action: str,
        resource: str,
        outcome: Outcome,
        request_id: str | None,
        detail: str | None,
    ) -> AuditEntry:
        return self.audit.append(
            principal=principal,
            action=action,
            resource=resource,
            outcome=outcome,
            request_id=request_id,
            detail=detail,
        )

    def verify_token(self, parsed: ParsedToken) -> VerifiedToken:
        """Authenticate a parsed token against the database, without writing audit.

        Reads the token, its owner and the owner's roles and grants in one transaction
        (and refreshes ``last_used_at`` at most once per minute, best effort).

        Raises:
            AuthFailure: unknown id or wrong secret (anonymous), revoked or expired token,
                disabled principal (401, with who and why for the audit entry).
        """
        now = self._clock()
        with session_scope(self._engine) as session:
            row = session.get(TokenRecord, parsed.token_id)
            matches = verify_secret(self._pepper, parsed, row.secret_hash if row else None)
            if row is None or not matches:
                raise AuthFailure("invalid token", ANONYMOUS, f"bad token {parsed.token_id}")
            owner = session.get(PrincipalRecord, row.principal)
            if row.revoked_at is not None:
                raise AuthFailure("token revoked", row.principal, f"revoked token {row.token_id}")
            if row.expires_at <= now:
                raise AuthFailure("token expired", row.principal, f"expired token {row.token_id}")
            if owner is None or owner.disabled:
                raise AuthFailure("principal disabled", row.principal, f"disabled {row.token_id}")
            principal = load_principal(session, owner.name, row.token_id)
            verified = VerifiedToken(principal, row.expires_at, row.secret_hash)
            last_used = row.last_used_at
        if last_used is None or now - last_used >= LAST_USED_GRANULARITY:
            self._touch(parsed.token_id, now)
        return verified

    def secret_matches(self, parsed: ParsedToken, secret_hash: str) -> bool:
        """Constant-time check of a presented secret against a stored (or cached) hash."""
        return verify_secret(self._pepper, parsed, secret_hash)

    def _authenticate(self, header_value: str | None) -> Principal:
        return self.verify_token(parse_header(header_value)).principal

    def _touch(self, token_id: str, now: datetime) -> None:
        """Refresh ``last_used_at``; best effort, a busy database must not fail a request."""
        stale = or_(
            TokenRecord.last_used_at.is_(None),
            TokenRecord.last_used_at < now - LAST_USED_GRANULARITY,
        )
        try:
            with session_scope(self._engine) as session:
                session.execute(
                    update(TokenRecord)
                    .where(TokenRecord.token_id == token_id, stale)
                    .values(last_used_at=now)
                )
        except (OperationalError, UnavailableError):
            pass
