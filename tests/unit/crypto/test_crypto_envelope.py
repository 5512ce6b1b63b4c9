"""Round trips through the in-memory and file APIs."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TypedDict

import pytest

from inhouse.crypto import (
    DEFAULT_CHUNK_SIZE,
    KeyRing,
    decrypt,
    decrypt_file,
    decrypt_to_file,
    encrypt,
    encrypt_file,
    read_header,
)
from inhouse.errors import ConfigError, IntegrityError, InvalidInputError


class Ref(TypedDict):
    artifact_id: str
    version: int


REF: Ref = {"artifact_id": "models/digits-mlp", "version": 7}


def _frames(blob: bytes) -> int:
    return len(blob) - read_header(blob).size


@pytest.mark.parametrize(
    ("size", "chunk_size", "n_chunks"),
    [
        (0, 16, 1),  # empty: one empty final chunk
        (5, 16, 1),  # less than one chunk
        (16, 16, 1),  # exactly one chunk
        (64, 16, 4),  # exact multiple: no empty trailing chunk
        (100, 16, 7),  # multi-chunk with a short tail
        (3000, DEFAULT_CHUNK_SIZE, 1),
    ],
)
def test_round_trip(ring: KeyRing, size: int, chunk_size: int, n_chunks: int) -> None:
    plaintext = os.urandom(size)
    blob = encrypt(plaintext, keyring=ring, chunk_size=chunk_size, **REF)
    assert decrypt(blob, keyring=ring, **REF) == plaintext
    # frame = 17 bytes of framing + ciphertext + 16-byte tag
    assert _frames(blob) == n_chunks * (17 + 16) + size
    assert plaintext not in blob or size == 0


def test_iterable_input_is_rechunked(ring: KeyRing) -> None:
    pieces = [b"a" * 3, b"", b"b" * 40, b"c" * 13]
    blob = encrypt(iter(pieces), keyring=ring, chunk_size=16, **REF)
    assert decrypt(blob, keyring=ring, **REF) == b"".join(pieces)
    assert _frames(blob) == 4 * 33 + 56


def test_header_fields(ring: KeyRing) -> None:
    blob = encrypt(b"x", keyring=ring, chunk_size=1024, **REF)
    header = read_header(blob)
    active = ring.active()
    assert (header.artifact_id, header.version) == ("models/digits-mlp", 7)
    assert header.key_id == active.id
    assert header.key_fingerprint.hex() == active.fingerprint
    assert header.chunk_size == 1024
    assert len(header.wrapped_key) == 384  # RSA-3072
    assert blob.startswith(b"INHSART\x00\x00\x01")


def test_fresh_data_key_per_artifact(ring: KeyRing) -> None:
    a = read_header(encrypt(b"same", keyring=ring, **REF))
    b = read_header(encrypt(b"same", keyring=ring, **REF))
    assert a.data_key_id != b.data_key_id
    assert a.wrapped_key != b.wrapped_key


def test_file_round_trip_streams_from_path(ring: KeyRing, tmp_path: Path) -> None:
    src = tmp_path / "weights.bin"
    src.write_bytes(os.urandom(1000))
    dst = tmp_path / "out" / "weights.enc"
    header = encrypt_file(src, dst, keyring=ring, chunk_size=64, **REF)
    assert header == read_header(dst)
    assert stat.S_IMODE(dst.stat().st_mode) == 0o600
    assert decrypt_file(dst, keyring=ring, **REF) == src.read_bytes()
    plain = tmp_path / "plain.bin"
    decrypt_to_file(dst, plain, keyring=ring, **REF)
    assert plain.read_bytes() == src.read_bytes()
    assert stat.S_IMODE(plain.stat().st_mode) == 0o600


def test_file_from_bytes(ring: KeyRing, tmp_path: Path) -> None:
    dst = tmp_path / "a.enc"
    encrypt_file(b"payload", dst, keyring=ring, **REF)
    assert decrypt_file(dst, keyring=ring, **REF) == b"payload"


def test_decrypt_to_file_leaves_nothing_on_failure(ring: KeyRing, tmp_path: Path) -> None:
    src = tmp_path / "a.enc"
    encrypt_file(os.urandom(200), src, keyring=ring, chunk_size=16, **REF)
    data = bytearray(src.read_bytes())
    data[-1] ^= 1  # last chunk's tag: every earlier chunk verifies first
    src.write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(IntegrityError):
        decrypt_to_file(src, out / "plain.bin", keyring=ring, **REF)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("chunk_size", [0, -1, 2**26 + 1])
def test_bad_chunk_size_refused(ring: KeyRing, chunk_size: int) -> None:
    with pytest.raises(ConfigError):
        encrypt(b"x", keyring=ring, chunk_size=chunk_size, **REF)


@pytest.mark.parametrize(
    ("artifact_id", "version"), [("", 1), ("a", -1), ("a", 2**64), ("x" * 1025, 1)]
)
def test_bad_artifact_ref_refused(ring: KeyRing, artifact_id: str, version: int) -> None:
    with pytest.raises(InvalidInputError):
        encrypt(b"x", keyring=ring, artifact_id=artifact_id, version=version)


def test_uninitialised_ring_cannot_encrypt(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="inhouse keys init"):
        encrypt(b"x", keyring=KeyRing(tmp_path / "none"), **REF)
