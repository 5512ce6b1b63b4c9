"""API token format, generation and keyed hashing.

A token reads ``ih_<id>_<secret>``: ``id`` is 16 hex digits (64 random bits, the database
key, safe to log), ``secret`` is 32 random bytes (256 bits) in URL-safe base64. Only
``HMAC-SHA256(pepper, id ":" secret)`` is stored. The secret has full entropy, so a slow
password hash buys nothing; the server-side pepper means a stolen database alone cannot
even confirm a guessed token. Binding the id into the MAC stops a hash being moved
between rows.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from inhouse.atomic import atomic_write_bytes
from inhouse.errors import AuthenticationError, ConfigError

TOKEN_PREFIX = "ih"
HASH_SCHEME = "hmac-sha256-v1"
MIN_PEPPER_BYTES = 32
SECRET_BYTES = 32
MAX_HEADER_LENGTH = 512

_TOKEN_RE = re.compile(r"^ih_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_DUMMY_ID = "0" * 16


@dataclass(frozen=True)
class IssuedToken:
    """A newly issued token. ``token`` is the plaintext: show it once, it is not stored."""

    token_id: str
    principal: str
    expires_at: datetime
    token: str = field(repr=False)


@dataclass(frozen=True)
class TokenInfo:
    """What is known about a token besides its secret."""

    token_id: str
    principal: str
    description: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    def status(self, now: datetime) -> str:
        """``revoked``, ``expired`` or ``active`` at time ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= now else "active"


@dataclass(frozen=True)
class ParsedToken:
    """A token split into its public id and its secret (never log ``secret``)."""

    token_id: str
    secret: str

    def __repr__(self) -> str:
        return f"ParsedToken(token_id={self.token_id!r}, secret=<redacted>)"


def new_token() -> tuple[ParsedToken, str]:
    """Generate a fresh token; returns the parts and the plaintext ``ih_<id>_<secret>``."""
    parsed = ParsedToken(secrets.token_hex(8), secrets.token_urlsafe(SECRET_BYTES))
    return parsed, f"{TOKEN_PREFIX}_{parsed.token_id}_{parsed.secret}"


def parse_token(token: str) -> ParsedToken:
    """Split a plaintext token.

    Raises:
        AuthenticationError: the token does not have the ``ih_<id>_<secret>`` shape.
    """
    match = _TOKEN_RE.fullmatch(token)
    if match is None:
        raise AuthenticationError("malformed token: expected 'ih_<id>_<secret>'")
    return ParsedToken(match.group(1), match.group(2))


def parse_authorization(header_value: str | None) -> ParsedToken:
    """Parse an HTTP ``Authorization`` value of the form ``Bearer ih_<id>_<secret>``.

    Raises:
        AuthenticationError: the header is missing, not a bearer credential, or malformed.
    """
    if header_value is None or not header_value.strip():
        raise AuthenticationError("missing credentials: send 'Authorization: Bearer <token>'")
    if len(header_value) > MAX_HEADER_LENGTH:
        raise AuthenticationError("malformed Authorization header: too long")
    scheme, _, credential = header_value.strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise AuthenticationError("malformed Authorization header: expected 'Bearer <token>'")
    return parse_token(credential.strip())


def hash_secret(pepper: bytes, token_id: str, secret: str) -> str:
    """The hex HMAC-SHA256 of ``id:secret`` under the server pepper."""
    message = f"{token_id}:{secret}".encode()
    return hmac.new(pepper, message, hashlib.sha256).hexdigest()


def verify_secret(pepper: bytes, parsed: ParsedToken, stored_hash: str | None) -> bool:
    """Constant-time check of a presented secret against a stored hash (``None``: unknown id)."""
    if stored_hash is None:
        # Same work as a real comparison, so timing does not reveal which ids exist.
        hmac.compare_digest(hash_secret(pepper, _DUMMY_ID, parsed.secret), "0" * 64)
        return False
    return hmac.compare_digest(hash_secret(pepper, parsed.token_id, parsed.secret), stored_hash)


def check_pepper(pepper: bytes) -> bytes:
    """Return ``pepper`` if it is long enough to key the token hash.

    Raises:
        ConfigError: the pepper is not bytes or is shorter than 32 bytes.
    """
    if not isinstance(pepper, bytes) or len(pepper) < MIN_PEPPER_BYTES:
        raise ConfigError(
            f"token pepper must be at least {MIN_PEPPER_BYTES} random bytes; "
            "generate one with load_or_create_pepper(path) or secrets.token_bytes(32)"
        )
    return pepper


def load_or_create_pepper(path: str | os.PathLike[str], *, create: bool = True) -> bytes:
    """Read the server pepper from ``path`` (mode 0600), creating it on first use.

    Losing this file invalidates every issued token; it never leaves the server.

    Raises:
        ConfigError: the file is missing (with ``create=False``), too short, or readable
            by group or others.
    """
    target = Path(path)
    if not target.exists():
        if not create:
            raise ConfigError(f"token pepper file {target} does not exist")
        atomic_write_bytes(target, secrets.token_bytes(MIN_PEPPER_BYTES), mode=0o600)
    if target.stat().st_mode & 0o077:
        raise ConfigError(f"token pepper file {target} is readable by others: chmod 600 it")
    return check_pepper(target.read_bytes())
