"""Token format, parsing of the Authorization header, keyed hashing and the pepper file."""

from __future__ import annotations

import base64
import os
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from inhouse.access.tokens import (
    IssuedToken,
    ParsedToken,
    check_pepper,
    hash_secret,
    load_or_create_pepper,
    new_token,
    parse_authorization,
    parse_token,
    verify_secret,
)
from inhouse.errors import AuthenticationError, ConfigError

PEPPER = b"k" * 32


def test_new_token_shape_and_entropy() -> None:
    parsed, plaintext = new_token()
    assert re.fullmatch(r"ih_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", plaintext)
    assert plaintext == f"ih_{parsed.token_id}_{parsed.secret}"
    assert len(base64.urlsafe_b64decode(parsed.secret + "=")) * 8 >= 256
    assert parse_token(plaintext) == parsed
    assert new_token()[1] != plaintext


def test_secret_may_contain_underscores() -> None:
    token = "ih_0123456789abcdef_" + "_" * 43
    assert parse_token(token).secret == "_" * 43


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header(header: str | None) -> None:
    with pytest.raises(AuthenticationError, match="missing"):
        parse_authorization(header)


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Bearer ih_nothex0123456789_" + "a" * 43,
        "Bearer ih_0123456789abcdef_short",
        "Bearer ih_0123456789abcdef_" + "a" * 42 + "\na",
        "Bearer xx_0123456789abcdef_" + "a" * 43,
        "Bearer " + "a" * 600,
    ],
)
def test_malformed_header(header: str) -> None:
    with pytest.raises(AuthenticationError, match="malformed") as info:
        parse_authorization(header)
    assert info.value.status_code == 401


def test_bearer_scheme_is_case_insensitive() -> None:
    parsed, plaintext = new_token()
    assert parse_authorization(f"bearer {plaintext}") == parsed
    assert parse_authorization(f"  Bearer   {plaintext}  ") == parsed


def test_hash_is_keyed_and_bound_to_id() -> None:
    parsed, _ = new_token()
    stored = hash_secret(PEPPER, parsed.token_id, parsed.secret)
    assert parsed.secret not in stored
    assert verify_secret(PEPPER, parsed, stored)
    assert not verify_secret(b"j" * 32, parsed, stored)
    other = ParsedToken("f" * 16, parsed.secret)
    assert not verify_secret(PEPPER, other, stored)
    assert not verify_secret(PEPPER, parsed, None)


def test_secrets_are_redacted_from_reprs() -> None:
    parsed, plaintext = new_token()
    issued = IssuedToken(parsed.token_id, "alice", datetime.now(timezone.utc), plaintext)
    assert parsed.secret not in repr(parsed)
    assert parsed.secret not in repr(issued)


def test_short_pepper_refused() -> None:
    with pytest.raises(ConfigError):
        check_pepper(b"short")


def test_pepper_file_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "token_pepper"
    with pytest.raises(ConfigError):
        load_or_create_pepper(path, create=False)
    pepper = load_or_create_pepper(path)
    assert len(pepper) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_pepper(path) == pepper
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_or_create_pepper(path)
