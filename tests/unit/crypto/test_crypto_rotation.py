"""Rotation re-wraps data keys in the header only; old keys decrypt until retired."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TypedDict

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from inhouse.crypto import (
    KeyRing,
    decrypt_file,
    encrypt,
    encrypt_file,
    key_usage,
    read_header,
    rewrap,
    rewrap_all,
    rotate,
    usage_checker,
)
from inhouse.errors import ConflictError, IntegrityError, KeyNotFoundError


class Ref(TypedDict):
    artifact_id: str
    version: int


REF: Ref = {"artifact_id": "ckpt/run-1", "version": 3}
PLAIN = os.urandom(100)


@pytest.fixture
def artifact(ring: KeyRing, tmp_path: Path) -> Path:
    path = tmp_path / "store" / "ckpt.enc"
    encrypt_file(PLAIN, path, keyring=ring, chunk_size=32, **REF)
    return path


def test_rewrap_keeps_chunks_byte_identical(
    ring: KeyRing, artifact: Path, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    before = artifact.read_bytes()
    old = read_header(before)
    new_key = ring.rotate(private_key=rsa_keys[1])
    header = rewrap(artifact, keyring=ring)
    after = artifact.read_bytes()
    assert header.key_id == new_key.id != old.key_id
    assert header.key_fingerprint.hex() == new_key.fingerprint
    assert (header.data_key_id, header.chunk_size) == (old.data_key_id, old.chunk_size)
    assert after[header.size :] == before[old.size :]
    assert after[: header.size] != before[: old.size]
    assert decrypt_file(artifact, keyring=ring, **REF) == PLAIN


def test_decrypt_only_key_works_until_retired(
    ring: KeyRing, artifact: Path, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    old = ring.active()
    new = ring.rotate(private_key=rsa_keys[1])
    fresh = KeyRing(ring.path)
    assert decrypt_file(artifact, keyring=fresh, **REF) == PLAIN
    assert read_header(encrypt(b"x", keyring=fresh, **REF)).key_id == new.id
    ring.retire(old.id, in_use=None)
    with pytest.raises(KeyNotFoundError, match="retired") as info:
        decrypt_file(artifact, keyring=KeyRing(ring.path), **REF)
    assert "\n" not in str(info.value)


def test_rewrap_is_a_no_op_on_the_target_key(ring: KeyRing, artifact: Path) -> None:
    inode = artifact.stat().st_ino
    assert rewrap(artifact, keyring=ring) == read_header(artifact)
    assert artifact.stat().st_ino == inode


def test_rewrap_keeps_file_mode(
    ring: KeyRing, artifact: Path, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    artifact.chmod(0o640)
    ring.rotate(private_key=rsa_keys[1])
    rewrap(artifact, keyring=ring)
    assert stat.S_IMODE(artifact.stat().st_mode) == 0o640


def test_rewrap_refuses_tampered_header_and_leaves_file(
    ring: KeyRing, artifact: Path, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    data = bytearray(artifact.read_bytes())
    data[20] ^= 0x01  # inside the data key id
    artifact.write_bytes(bytes(data))
    ring.rotate(private_key=rsa_keys[1])
    with pytest.raises(IntegrityError):
        rewrap(artifact, keyring=ring)
    assert artifact.read_bytes() == bytes(data)
    assert [p.name for p in artifact.parent.iterdir()] == ["ckpt.enc"]


def test_rewrap_to_retired_key_is_refused(
    ring: KeyRing, artifact: Path, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    old = ring.active()
    ring.rotate(private_key=rsa_keys[1])
    rewrap(artifact, keyring=ring)
    ring.retire(old.id, in_use=None)
    with pytest.raises(KeyNotFoundError):
        rewrap(artifact, keyring=ring, new_key_id=old.id)


def test_full_rotation_across_a_store(
    ring: KeyRing, tmp_path: Path, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    store = tmp_path / "store"
    paths = []
    for i in range(3):
        path = store / f"m{i}" / "weights.enc"
        encrypt_file(bytes([i]) * 50, path, keyring=ring, artifact_id=f"m{i}", version=1)
        paths.append(path)
    (store / "notes.txt").write_text("not an artifact")
    old = ring.active()
    assert key_usage([store]) == {old.id: paths}
    checker = usage_checker([store])

    report = rotate(keyring=ring, artifacts=[store], private_key=rsa_keys[1])
    assert report.key == ring.active() and report.rewrapped == paths
    assert key_usage([store]) == {report.key.id: paths}
    assert rewrap_all([store], keyring=ring).unchanged == paths
    ring.retire(old.id, in_use=checker)
    fresh = KeyRing(ring.path)
    for i, path in enumerate(paths):
        plain = decrypt_file(path, keyring=fresh, artifact_id=f"m{i}", version=1)
        assert plain == bytes([i]) * 50


def test_retire_refused_while_an_artifact_uses_the_key(
    ring: KeyRing, artifact: Path, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    old = ring.active()
    ring.rotate(private_key=rsa_keys[1])
    with pytest.raises(ConflictError):
        ring.retire(old.id, in_use=usage_checker([artifact.parent]))
    assert decrypt_file(artifact, keyring=ring, **REF) == PLAIN


def test_two_rotations_then_rewrap_from_the_oldest(
    ring: KeyRing, artifact: Path, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    ring.rotate(private_key=rsa_keys[1])
    newest = ring.rotate(private_key=rsa_keys[2])
    assert rewrap(artifact, keyring=ring).key_id == newest.id
    assert decrypt_file(artifact, keyring=ring, **REF) == PLAIN
