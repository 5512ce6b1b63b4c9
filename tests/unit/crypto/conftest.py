"""Shared fixtures: RSA-3072 keys are generated once per session, then imported into rings."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from inhouse.crypto import KeyRing


@pytest.fixture(scope="session")
def rsa_keys() -> list[rsa.RSAPrivateKey]:
    """Three 3072-bit keys, enough for init + two rotations."""
    return [rsa.generate_private_key(public_exponent=65537, key_size=3072) for _ in range(3)]


@pytest.fixture
def ring(tmp_path: Path, rsa_keys: list[rsa.RSAPrivateKey]) -> KeyRing:
    """An initialised key ring whose active key is ``rsa_keys[0]``."""
    keyring = KeyRing(tmp_path / "keys")
    keyring.init(private_key=rsa_keys[0])
    return keyring
