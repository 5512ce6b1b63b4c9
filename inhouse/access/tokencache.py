"""What a serving process remembers about credentials: accepted ones, refused ones.

:class:`TokenCache` keeps, per token id, what the database said when the token was last
read (the owner with roles and grants, the expiry, the stored keyed hash of the secret,
never the secret) for ``ttl_s``; past that the entry is stale and the next use reads again,
one read per token at a time. A stale entry is still proof that its hash is the token's
(a token's hash never changes), so a presented secret can be checked against it.

It also remembers refused credentials (unknown id, wrong secret, expired, revoked,
disabled) for ``min(ttl_s, 1 s)``, keyed by the whole credential (id and secret), so
repeating one does not read the database again, a wrong secret sent for a real token id
never refuses that token's holder, and a token issued or re-enabled meanwhile works at most
1 s later. Both maps are bounded; the oldest insertions go first.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from inhouse.access.permissions import Principal
from inhouse.access.service import AccessService, AuthFailure
from inhouse.access.tokens import ParsedToken
from inhouse.errors import UnavailableError

MAX_CACHED_TOKENS = 10_000
MAX_REFUSED = 10_000
REFUSED_TTL_S = 1.0
Refusal = tuple[str, str, str]  # message, principal, detail: AuthFailure's arguments
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class CachedToken:
    """A token as the database vouched for it at ``cached_at``."""

    principal: Principal
    expires_at: datetime
    cached_at: datetime
    secret_hash: str = field(repr=False)


class TokenCache:
    """Thread-safe memory of accepted (``ttl_s``) and refused (at most 1 s) credentials.

    Args:
        service: reads tokens (:meth:`AccessService.verify_token`) on its clock.
        ttl_s: how long an accepted token's state is trusted; 0 remembers nothing.
    """

    def __init__(self, service: AccessService, ttl_s: float) -> None:
        self._service = service
        self._clock = service.clock
        self._ttl = timedelta(seconds=ttl_s)
        self._refused_ttl = timedelta(seconds=min(ttl_s, REFUSED_TTL_S))
        self._cache: dict[str, CachedToken] = {}
        self._refused: dict[ParsedToken, tuple[datetime, Refusal]] = {}
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def known(self, token_id: str) -> CachedToken | None:
        """The entry of ``token_id``, fresh or stale (its hash is still the token's)."""
        return self._cache.get(token_id)

    def is_fresh(self, cached: CachedToken, now: datetime) -> bool:
        # abs(): a wall clock stepping back cannot make an entry live longer than the TTL.
        return abs(now - cached.cached_at) < self._ttl

    def refused(self, parsed: ParsedToken, now: datetime) -> Refusal | None:
        """The refusal remembered for this exact credential, if still fresh."""
        entry = self._refused.get(parsed)
        if entry is None or abs(now - entry[0]) >= self._refused_ttl:
            return None
        return entry[1]

    def load(self, parsed: ParsedToken) -> CachedToken:
        """Read the token (unless another thread just did); remember the answer.

        Raises:
            AuthFailure: refused by the database (remembered for at most 1 s).
            UnavailableError: the database could not be read (nothing remembered).
        """
        token_id = parsed.token_id
        with self._lock:
            gate = self._loading.setdefault(token_id, threading.Lock())
        try:
            with gate:  # one database read per token at a time; the others reuse it
                cached = self._cache.get(token_id)
                if cached is not None and self.is_fresh(cached, self._clock()):
                    return cached
                return self._read(parsed)
        finally:
            with self._lock:
                if self._loading.get(token_id) is gate:
                    del self._loading[token_id]

    def invalidate(self, token_id: str | None = None) -> None:
        """Forget one token id (or everything), accepted and refused."""
        with self._lock:
            if token_id is None:
                self._cache.clear()
                self._refused.clear()
                return
            self._cache.pop(token_id, None)
            for key in [k for k in self._refused if k.token_id == token_id]:
                del self._refused[key]

    def _read(self, parsed: ParsedToken) -> CachedToken:
        now = self._clock()
        try:
            verified = self._service.verify_token(parsed)
        except AuthFailure as failure:
            self.invalidate(parsed.token_id)  # revoked, expired or disabled since cached
            detail = failure.detail.removeprefix("unauthenticated: ")
            if self._refused_ttl:
                refusal = (str(failure), failure.principal, detail)
                self._remember(self._refused, parsed, (now, refusal), MAX_REFUSED)
            raise
        except SQLAlchemyError as exc:
            raise UnavailableError(f"access database unavailable: {type(exc).__name__}") from exc
        cached = CachedToken(verified.principal, verified.expires_at, now, verified.secret_hash)
        if self._ttl:
            self._remember(self._cache, parsed.token_id, cached, MAX_CACHED_TOKENS)
        return cached

    def _remember(self, table: dict[K, V], key: K, value: V, limit: int) -> None:
        with self._lock:
            if len(table) >= limit and key not in table:
                del table[next(iter(table))]  # the oldest insertion
            table[key] = value
