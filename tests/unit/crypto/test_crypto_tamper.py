"""Every way to damage an artifact fails with a specific CryptoError and returns no plaintext."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TypedDict

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from inhouse.crypto import KeyRing, decrypt, decrypt_file, encrypt, read_header
from inhouse.errors import (
    CryptoError,
    IntegrityError,
    KeyNotFoundError,
    UnsupportedFormatError,
)


class Ref(TypedDict):
    artifact_id: str
    version: int


REF: Ref = {"artifact_id": "models/digits-mlp", "version": 7}
PLAIN = bytes(range(40))  # three chunks of 16, 16, 8 bytes
FRAME = 17 + 16 + 16  # full frame: flag + nonce + length, 16 bytes of data, 16-byte tag


@pytest.fixture
def blob(ring: KeyRing) -> bytes:
    return encrypt(PLAIN, keyring=ring, chunk_size=16, **REF)


def _split(blob: bytes) -> tuple[bytes, list[bytes]]:
    start = read_header(blob).size
    head, body = blob[:start], blob[start:]
    return head, [body[:FRAME], body[FRAME : 2 * FRAME], body[2 * FRAME :]]


def _fails(
    blob: bytes,
    ring: KeyRing,
    error: type[CryptoError],
    *,
    artifact_id: str = REF["artifact_id"],
    version: int = REF["version"],
) -> CryptoError:
    with pytest.raises(error) as info:
        decrypt(blob, keyring=ring, artifact_id=artifact_id, version=version)
    assert "\n" not in str(info.value)
    return info.value


def test_wrong_artifact_id_or_version(blob: bytes, ring: KeyRing) -> None:
    _fails(blob, ring, IntegrityError, artifact_id="models/other")
    _fails(blob, ring, IntegrityError, version=8)


def test_header_relabelled_to_another_artifact(blob: bytes, ring: KeyRing) -> None:
    forged = blob.replace(b"models/digits-mlp", b"models/digits-mlq", 1)
    _fails(forged, ring, IntegrityError, artifact_id="models/digits-mlq")
    version_at = 64
    forged = blob[:version_at] + struct.pack(">Q", 8) + blob[version_at + 8 :]
    _fails(forged, ring, IntegrityError, version=8)


def test_reordered_chunks(blob: bytes, ring: KeyRing) -> None:
    head, (a, b, c) = _split(blob)
    _fails(head + b + a + c, ring, IntegrityError)


def test_truncated_at_chunk_boundary(blob: bytes, ring: KeyRing) -> None:
    head, (a, b, _) = _split(blob)
    error = _fails(head + a + b, ring, IntegrityError)
    assert "truncated" in str(error)
    _fails(head, ring, IntegrityError)


def test_truncated_and_marked_final(blob: bytes, ring: KeyRing) -> None:
    head, (a, b, _) = _split(blob)
    _fails(head + a + b"\x01" + b[1:], ring, IntegrityError)


@pytest.mark.parametrize("cut", [1, 7, 9, 40, 100, 500, 20])
def test_truncated_anywhere(blob: bytes, ring: KeyRing, cut: int) -> None:
    _fails(blob[:-cut], ring, IntegrityError)
    _fails(blob[:cut], ring, IntegrityError)


def test_empty_file(ring: KeyRing) -> None:
    _fails(b"", ring, IntegrityError)


def test_trailing_data(blob: bytes, ring: KeyRing) -> None:
    head, frames = _split(blob)
    _fails(blob + b"\x00", ring, IntegrityError)
    _fails(blob + frames[2], ring, IntegrityError)


def test_spliced_chunks_from_another_artifact(blob: bytes, ring: KeyRing) -> None:
    other = encrypt(bytes(40), keyring=ring, chunk_size=16, **REF)
    head, (a, b, c) = _split(blob)
    _, (x, y, z) = _split(other)
    _fails(head + a + y + c, ring, IntegrityError)
    # The other artifact's header (same id, version) over our chunks: different data key.
    other_head, _ = _split(other)
    _fails(other_head + a + b + c, ring, IntegrityError)


def test_every_single_bit_flip_is_caught(blob: bytes, ring: KeyRing) -> None:
    header = read_header(blob)
    a, k = len(header.artifact_id), len(header.key_id)
    key_len_at, key_id_at, wrapped_len_at = 74 + a, 75 + a, 75 + a + k

    def expected(pos: int) -> tuple[type[CryptoError], ...]:
        if pos < 12:  # magic, format version, algorithm ids
            return (UnsupportedFormatError,)
        if 32 <= pos < 64:  # master key fingerprint
            return (KeyNotFoundError,)
        if key_len_at <= pos < wrapped_len_at:  # key id (and its length)
            return (KeyNotFoundError, IntegrityError)
        return (IntegrityError,)

    for pos in range(len(blob)):
        damaged = bytearray(blob)
        damaged[pos] ^= 1 << (pos % 8)
        with pytest.raises(CryptoError) as info:
            decrypt(bytes(damaged), keyring=ring, **REF)
        assert isinstance(info.value, expected(pos)), (pos, info.value)
        assert "\n" not in str(info.value)
    assert key_id_at < wrapped_len_at


def test_unknown_format_version_magic_and_algorithm(blob: bytes, ring: KeyRing) -> None:
    error = _fails(blob[:8] + b"\x00\x02" + blob[10:], ring, UnsupportedFormatError)
    assert "version 2" in str(error)
    _fails(b"PK\x03\x04" + blob[4:], ring, UnsupportedFormatError)
    _fails(blob[:10] + b"\x02" + blob[11:], ring, UnsupportedFormatError)
    _fails(blob[:11] + b"\x07" + blob[12:], ring, UnsupportedFormatError)


def test_unknown_key(blob: bytes, tmp_path: Path, rsa_keys: list[rsa.RSAPrivateKey]) -> None:
    other = KeyRing(tmp_path / "other")
    other.init(private_key=rsa_keys[1])
    error = _fails(blob, other, KeyNotFoundError)
    assert read_header(blob).key_id in str(error)
    _fails(blob, KeyRing(tmp_path / "missing"), KeyNotFoundError)


def test_wrong_key_under_the_same_id(
    blob: bytes, tmp_path: Path, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    # A different ring that happens to use the artifact's key id for other key material.
    other = KeyRing(tmp_path / "other")
    record = other.init(private_key=rsa_keys[1])
    wanted = read_header(blob).key_id
    manifest = json.loads(other.manifest_path.read_text())
    manifest["keys"][0]["id"] = wanted
    other.manifest_path.write_text(json.dumps(manifest))
    (other.path / f"{record.id}.pem").rename(other.path / f"{wanted}.pem")
    error = _fails(blob, KeyRing(other.path), KeyNotFoundError)
    assert "fingerprint" in str(error)


def test_file_api_reports_the_same(blob: bytes, ring: KeyRing, tmp_path: Path) -> None:
    path = tmp_path / "a.enc"
    path.write_bytes(blob[:-1])
    with pytest.raises(IntegrityError):
        decrypt_file(path, keyring=ring, **REF)
