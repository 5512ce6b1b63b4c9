"""Fixtures of the reliability suite: a key ring, a registry on SQLite, a tiny digits model.

Helpers shared by the modules are in ``tests/reliability/helpers.py``; the deployment the
load, fault and fuzz tests share is in ``tests/reliability/serving.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from inhouse.crypto import KeyRing
from inhouse.registry import Registry
from inhouse.schema import get_engine


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    """One 3072-bit master key per session (generating one takes about a second)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


@pytest.fixture()
def keyring(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> KeyRing:
    ring = KeyRing(tmp_path / "keys")
    ring.init(private_key=rsa_key)
    return ring


@pytest.fixture()
def registry(tmp_path: Path, keyring: KeyRing) -> Registry:
    """An encrypted registry (the default configuration) on a fresh SQLite file."""
    engine = get_engine(f"sqlite:///{tmp_path / 'reliability.db'}")
    return Registry(engine=engine, root=tmp_path / "registry", keyring=keyring)

