"""docs/artifact-format.md is complete: a second implementation, written from the spec alone.

The reader and writer below use pycryptodome and ``struct`` only; nothing from inhouse.crypto
parses or builds the bytes. inhouse encrypts, the spec reader decrypts, and the other way round.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest

from inhouse.crypto import KeyRing, decrypt_file, encrypt_file, rewrap
from inhouse.errors import IntegrityError

AES: Any = pytest.importorskip("Crypto.Cipher.AES")
PKCS1_OAEP: Any = pytest.importorskip("Crypto.Cipher.PKCS1_OAEP")
RSA: Any = pytest.importorskip("Crypto.PublicKey.RSA")
SHA256: Any = pytest.importorskip("Crypto.Hash.SHA256")
MGF1: Any = pytest.importorskip("Crypto.Signature.pss").MGF1

SPEC_MAGIC = bytes.fromhex("494E485341525400")


def _oaep(key: Any, label: bytes) -> Any:
    return PKCS1_OAEP.new(key, hashAlgo=SHA256, mgfunc=lambda x, y: MGF1(x, y, SHA256), label=label)


def _aad(dkid: bytes, artifact_id: str, version: int, index: int, flag: int) -> bytes:
    aid = artifact_id.encode()
    return (
        SPEC_MAGIC
        + struct.pack(">H", 1)
        + dkid
        + struct.pack(">Q", version)
        + struct.pack(">H", len(aid))
        + aid
        + struct.pack(">QB", index, flag)
    )


def spec_decrypt(data: bytes, key_dir: Path, artifact_id: str, version: int) -> bytes:
    """Decrypt an artifact following docs/artifact-format.md step by step."""
    assert data[0:8] == SPEC_MAGIC
    fmt_version, cipher_id, wrap_id, chunk_size = struct.unpack(">HBBI", data[8:16])
    assert (fmt_version, cipher_id, wrap_id) == (1, 1, 1)
    dkid, fp = data[16:32], data[32:64]
    (ver,) = struct.unpack(">Q", data[64:72])
    (a,) = struct.unpack(">H", data[72:74])
    aid = data[74 : 74 + a].decode("utf-8")
    assert (aid, ver) == (artifact_id, version)
    k = data[74 + a]
    key_id = data[75 + a : 75 + a + k].decode("ascii")
    label_end = 75 + a + k
    (w,) = struct.unpack(">H", data[label_end : label_end + 2])
    wrapped = data[label_end + 2 : label_end + 2 + w]
    private = RSA.import_key((key_dir / f"{key_id}.pem").read_bytes())
    assert SHA256.new(private.public_key().export_key("DER")).digest() == fp
    dk = _oaep(private, data[:label_end]).decrypt(wrapped)
    assert len(dk) == 32

    out, pos, index = [], label_end + 2 + w, 0
    while True:
        flag, nonce, c = struct.unpack(">B12sI", data[pos : pos + 17])
        body = data[pos + 17 : pos + 17 + c]
        pos += 17 + c
        cipher = AES.new(dk, AES.MODE_GCM, nonce=nonce, mac_len=16)
        cipher.update(_aad(dkid, artifact_id, version, index, flag))
        piece = cipher.decrypt_and_verify(body[:-16], body[-16:])
        assert flag == 1 or len(piece) == chunk_size
        out.append(piece)
        if flag == 1:
            break
        index += 1
    assert pos == len(data)
    return b"".join(out)


def spec_encrypt(
    plaintext: bytes, key_dir: Path, key_id: str, artifact_id: str, version: int, chunk_size: int
) -> bytes:
    """Write an artifact following docs/artifact-format.md."""
    private = RSA.import_key((key_dir / f"{key_id}.pem").read_bytes())
    public = private.public_key()
    dk, dkid = os.urandom(32), os.urandom(16)
    aid = artifact_id.encode()
    label = (
        SPEC_MAGIC
        + struct.pack(">HBBI", 1, 1, 1, chunk_size)
        + dkid
        + SHA256.new(public.export_key("DER")).digest()
        + struct.pack(">QH", version, len(aid))
        + aid
        + struct.pack(">B", len(key_id))
        + key_id.encode("ascii")
    )
    wrapped = _oaep(public, label).encrypt(dk)
    out = [label, struct.pack(">H", len(wrapped)), wrapped]
    pieces = [plaintext[i : i + chunk_size] for i in range(0, len(plaintext), chunk_size)] or [b""]
    for index, piece in enumerate(pieces):
        flag = 1 if index == len(pieces) - 1 else 0
        nonce = os.urandom(12)
        cipher = AES.new(dk, AES.MODE_GCM, nonce=nonce, mac_len=16)
        cipher.update(_aad(dkid, artifact_id, version, index, flag))
        ct, tag = cipher.encrypt_and_digest(piece)
        out.append(struct.pack(">B12sI", flag, nonce, len(ct) + 16) + ct + tag)
    return b"".join(out)


@pytest.mark.parametrize(("size", "chunk_size"), [(0, 16), (10, 16), (64, 16), (1000, 64)])
def test_spec_reader_decrypts_inhouse_artifacts(
    ring: KeyRing, tmp_path: Path, size: int, chunk_size: int
) -> None:
    plaintext = os.urandom(size)
    path = tmp_path / "a.enc"
    encrypt_file(
        plaintext, path, keyring=ring, artifact_id="mé/α", version=5, chunk_size=chunk_size
    )
    assert spec_decrypt(path.read_bytes(), ring.path, "mé/α", 5) == plaintext


def test_spec_reader_decrypts_a_rewrapped_artifact(
    ring: KeyRing, tmp_path: Path, rsa_keys: list[Any]
) -> None:
    path = tmp_path / "a.enc"
    encrypt_file(b"rotate me" * 30, path, keyring=ring, artifact_id="m", version=1, chunk_size=32)
    ring.rotate(private_key=rsa_keys[1])
    rewrap(path, keyring=ring)
    assert spec_decrypt(path.read_bytes(), ring.path, "m", 1) == b"rotate me" * 30


@pytest.mark.parametrize(("size", "chunk_size"), [(0, 16), (64, 16), (1000, 64)])
def test_inhouse_decrypts_spec_written_artifacts(
    ring: KeyRing, tmp_path: Path, size: int, chunk_size: int
) -> None:
    plaintext = os.urandom(size)
    data = spec_encrypt(plaintext, ring.path, ring.active().id, "m/x", 9, chunk_size)
    path = tmp_path / "b.enc"
    path.write_bytes(data)
    assert decrypt_file(path, keyring=ring, artifact_id="m/x", version=9) == plaintext
    with pytest.raises(IntegrityError):
        decrypt_file(path, keyring=ring, artifact_id="m/x", version=8)
