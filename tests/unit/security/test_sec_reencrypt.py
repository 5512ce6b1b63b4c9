"""Re-encryption after a key compromise: fresh data keys, atomic and verified file by file.

Issue #16 (Medium 5): re-wrapping keeps every data key, so an old backup of an artifact plus a
rotated-out private key decrypts the current file, even after ``retire``. ``reencrypt`` gives
each artifact a fresh data key; these tests pin that down and check that a failure part-way
leaves every file readable, either old or new.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from inhouse.crypto import (
    KeyRing,
    decrypt_file,
    encrypt_file,
    key_usage,
    read_header,
    reencrypt,
    reencrypt_all,
    reencryption,
    rotate,
    usage_checker,
)
from inhouse.crypto import format as fmt
from inhouse.errors import IntegrityError, StorageError

PLAIN = os.urandom(300)
REF: dict[str, Any] = {"artifact_id": "fraud/weights.safetensors", "version": 4}


@pytest.fixture(scope="module")
def keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=3072) for _ in range(2)]


@pytest.fixture
def ring(tmp_path: Path, keys: list[rsa.RSAPrivateKey]) -> KeyRing:
    keyring = KeyRing(tmp_path / "keys")
    keyring.init(private_key=keys[0])
    return keyring


@pytest.fixture
def artifact(ring: KeyRing, tmp_path: Path) -> Path:
    path = tmp_path / "registry" / "fraud" / "v4" / "weights.safetensors.enc"
    encrypt_file(PLAIN, path, keyring=ring, chunk_size=64, **REF)
    return path


def attacker_decrypt(current: bytes, *, backup: bytes, old_key: rsa.RSAPrivateKey) -> bytes:
    """What someone holding an old copy and the old private key can do: unwrap the backup's
    data key, then use it on the current file's chunks (raises ``InvalidTag`` if it fails)."""
    old = fmt.read_header(_Stream(backup))
    oaep = padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()),
        algorithm=hashes.SHA256(),
        label=old.authenticated_bytes(),
    )
    aead = AESGCM(old_key.decrypt(old.wrapped_key, oaep))
    stream = _Stream(current)
    header = fmt.read_header(stream)
    plain, index = b"", 0
    while (frame := fmt.read_frame(stream, chunk_size=header.chunk_size)) is not None:
        final, nonce, ciphertext = frame
        aad = fmt.chunk_aad(
            data_key_id=header.data_key_id,
            artifact_id=header.artifact_id,
            version=header.version,
            index=index,
            final=final,
        )
        plain += aead.decrypt(nonce, ciphertext, aad)
        index += 1
    return plain


class _Stream:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.pos + size
        piece, self.pos = self.data[self.pos : end], min(end, len(self.data))
        return piece


def test_rewrap_alone_lets_an_old_backup_and_the_old_key_read_the_current_file(
    ring: KeyRing, artifact: Path, keys: list[rsa.RSAPrivateKey]
) -> None:
    """The finding itself (why ``--reencrypt`` exists): routine rotation does not help here."""
    backup, old = artifact.read_bytes(), ring.active()
    rotate(keyring=ring, artifacts=[artifact.parent], private_key=keys[1])
    ring.retire(old.id, in_use=usage_checker([artifact.parent]))
    assert read_header(artifact).key_id != old.id
    assert attacker_decrypt(artifact.read_bytes(), backup=backup, old_key=keys[0]) == PLAIN


def test_reencrypt_then_retire_defeats_an_old_backup_plus_the_old_key(
    ring: KeyRing, artifact: Path, keys: list[rsa.RSAPrivateKey]
) -> None:
    backup, old = artifact.read_bytes(), ring.active()
    report = rotate(keyring=ring, artifacts=[artifact.parent], private_key=keys[1], reencrypt=True)
    assert report.reencrypted == [artifact] and not report.failed
    ring.retire(old.id, in_use=usage_checker([artifact.parent]))

    before, after = read_header(backup), read_header(artifact)
    assert after.data_key_id != before.data_key_id and after.key_id == report.key.id
    assert (after.artifact_id, after.version, after.chunk_size) == (
        before.artifact_id,
        before.version,
        before.chunk_size,
    )
    with pytest.raises(InvalidTag):
        attacker_decrypt(artifact.read_bytes(), backup=backup, old_key=keys[0])
    # Even keeping the old data key id in the AAD does not help: the key itself differs.
    spliced = backup[: read_header(backup).size] + artifact.read_bytes()[after.size :]
    with pytest.raises(InvalidTag):
        attacker_decrypt(spliced, backup=backup, old_key=keys[0])
    assert decrypt_file(artifact, keyring=KeyRing(ring.path), **REF) == PLAIN


def test_reencrypt_gives_a_fresh_data_key_even_on_the_active_key(
    ring: KeyRing, artifact: Path
) -> None:
    artifact.chmod(0o640)
    before = read_header(artifact)
    after = reencrypt(artifact, keyring=ring)
    assert after.key_id == before.key_id and after.data_key_id != before.data_key_id
    assert read_header(artifact) == after
    assert stat.S_IMODE(artifact.stat().st_mode) == 0o640
    assert decrypt_file(artifact, keyring=ring, **REF) == PLAIN
    assert sorted(p.name for p in artifact.parent.iterdir()) == [artifact.name]


def test_a_tampered_artifact_is_never_resealed(ring: KeyRing, artifact: Path) -> None:
    data = bytearray(artifact.read_bytes())
    data[-1] ^= 0x01  # the tag of the final chunk: earlier chunks still verify
    artifact.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        reencrypt(artifact, keyring=ring)
    assert artifact.read_bytes() == bytes(data)
    assert sorted(p.name for p in artifact.parent.iterdir()) == [artifact.name]
    report = reencrypt_all([artifact.parent], keyring=ring)
    assert report.reencrypted == [] and [p for p, _ in report.failed] == [artifact]


def test_a_bad_read_back_leaves_the_old_file(
    ring: KeyRing, artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = artifact.read_bytes()
    monkeypatch.setattr(reencryption, "_plaintext_digest", lambda *_: b"\0" * 32)
    with pytest.raises(IntegrityError, match="does not match"):
        reencrypt(artifact, keyring=ring)
    assert artifact.read_bytes() == before
    assert sorted(p.name for p in artifact.parent.iterdir()) == [artifact.name]


def test_a_concurrent_writer_wins(
    ring: KeyRing, artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = reencryption._plaintext_digest
    newer = os.urandom(50)

    def digest_then_race(*args: Any) -> bytes:
        encrypt_file(newer, artifact, keyring=ring, **REF)  # e.g. a checkpoint written now
        return real(*args)

    monkeypatch.setattr(reencryption, "_plaintext_digest", digest_then_race)
    report = reencrypt_all([artifact], keyring=ring)
    assert report.changed == [artifact] and report.reencrypted == []
    assert decrypt_file(artifact, keyring=ring, **REF) == newer


def test_an_artifact_removed_meanwhile_is_reported_not_fatal(
    ring: KeyRing, artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = reencryption._plaintext_digest

    def digest_then_prune(*args: Any) -> bytes:
        artifact.unlink()  # e.g. a training run pruning old checkpoints
        return real(*args)

    monkeypatch.setattr(reencryption, "_plaintext_digest", digest_then_prune)
    report = reencrypt_all([artifact.parent], keyring=ring)
    assert report.changed == [artifact]
    assert list(artifact.parent.iterdir()) == []


def _store(ring: KeyRing, root: Path, count: int) -> dict[Path, tuple[bytes, dict[str, Any]]]:
    """Artifacts of several kinds, named as the registry and checkpoints name them."""
    names = [
        "weights.safetensors.enc",
        "model.compressed.enc",
        "lineage.json.enc",
        "state.json.enc",
    ]
    files: dict[Path, tuple[bytes, dict[str, Any]]] = {}
    for i in range(count):
        name = names[i % len(names)]
        path = root / f"m{i}" / name
        ref = {"artifact_id": f"m{i}/{name.removesuffix('.enc')}", "version": i + 1}
        plain = os.urandom(200 + i)
        encrypt_file(plain, path, keyring=ring, chunk_size=64, **ref)
        files[path] = (plain, ref)
    return files


def _check_old_or_new(
    files: dict[Path, tuple[bytes, dict[str, Any]]], snapshot: dict[Path, bytes], ring: KeyRing
) -> tuple[int, int]:
    olds = news = 0
    for path, (plain, ref) in files.items():
        assert decrypt_file(path, keyring=KeyRing(ring.path), **ref) == plain
        if path.read_bytes() == snapshot[path]:
            olds += 1
        else:
            assert read_header(path).data_key_id != read_header(snapshot[path]).data_key_id
            news += 1
    return olds, news


class _Crash(BaseException):
    """Stands for the process dying: no ``except Exception`` handler catches it."""


def _crash_on_artifact(n: int, real: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``os.replace`` to die before the n-th artifact (not key ring file) is replaced."""
    calls = {"n": 0}

    def wrapped(src: Any, dst: Any, **kwargs: Any) -> Any:
        if str(dst).endswith(".enc"):
            calls["n"] += 1
            if calls["n"] == n:
                raise _Crash
        return real(src, dst, **kwargs)

    return wrapped


def test_a_crash_between_files_leaves_each_file_old_or_new_then_resumes(
    ring: KeyRing, tmp_path: Path, keys: list[rsa.RSAPrivateKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    files = _store(ring, root, 5)
    snapshot = {p: p.read_bytes() for p in files}
    old = ring.active()
    monkeypatch.setattr(reencryption.os, "replace", _crash_on_artifact(3, os.replace))
    with pytest.raises(_Crash):
        rotate(keyring=ring, artifacts=[root], private_key=keys[1], reencrypt=True)
    monkeypatch.undo()
    assert _check_old_or_new(files, snapshot, ring) == (3, 2)
    assert not list(root.rglob("*.tmp"))
    assert set(key_usage([root])) == {old.id, ring.active().id}

    progress: list[tuple[int, int]] = []
    report = reencrypt_all([root], keyring=ring, progress=lambda *a: progress.append(a))
    assert sorted(report.reencrypted) == sorted(files) and progress[-1] == (5, 5)
    ring.retire(old.id, in_use=usage_checker([root]))
    assert _check_old_or_new(files, snapshot, ring) == (0, 5)


def test_a_full_disk_mid_file_stops_and_keeps_every_file_readable(
    ring: KeyRing, tmp_path: Path, keys: list[rsa.RSAPrivateKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    files = _store(ring, root, 3)
    snapshot = {p: p.read_bytes() for p in files}
    real_seal = reencryption.seal
    calls = {"n": 0}

    class FillsUp:
        def __init__(self, out: Any) -> None:
            self.out, self.written = out, 0

        def write(self, data: bytes) -> int:
            if self.written > 150:
                raise OSError(28, "No space left on device")
            self.written += len(data)
            return int(self.out.write(data))

    def seal(out: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return real_seal(FillsUp(out) if calls["n"] == 2 else out, *args, **kwargs)

    monkeypatch.setattr(reencryption, "seal", seal)
    with pytest.raises(StorageError, match="after re-encrypting 1 of 3"):
        rotate(keyring=ring, artifacts=[root], private_key=keys[1], reencrypt=True)
    assert _check_old_or_new(files, snapshot, ring) == (2, 1)
    assert not list(root.rglob("*.tmp"))
