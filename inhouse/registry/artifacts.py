"""How a version's artifact bytes go to disk and back: optional encryption, then a hash check.

Formats: ``safetensors`` (the float state dict; the module is rebuilt from the spec) and
``compressed`` (pruned/int8, :mod:`inhouse.compress`); :mod:`inhouse.kinds.modules` turns a
module into these bytes and back, the registry stores them. With a key ring the bytes are
envelope-encrypted (:mod:`inhouse.crypto`, bound to ``<model>/<file>`` and the version) and
the file gets the suffix ``.enc``: plaintext weights never touch the disk. On object storage
(:mod:`inhouse.storage`) the same bytes are uploaded: the store never sees plaintext.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from inhouse.crypto import KeyRing, decrypt_file, encrypt
from inhouse.crypto.envelope import encrypt_to
from inhouse.errors import IntegrityError, InvalidInputError, StorageError
from inhouse.storage.objects import read_object, seal_object, unseal_object, write_object

if TYPE_CHECKING:  # pyarrow is imported where a store is used: the CLI stays fast
    from pyarrow import fs as pafs

FILENAMES = {"safetensors": "weights.safetensors", "compressed": "model.compressed"}
ENCRYPTED_SUFFIX = ".enc"


@dataclass(frozen=True)
class StoredArtifact:
    """What the registry writes for one version: the file name, its bytes and their hash."""

    filename: str
    data: bytes
    sha256: str
    plaintext_size: int


def check_format(fmt: str) -> str:
    """``fmt`` when the registry knows it, else InvalidInputError."""
    if fmt not in FILENAMES:
        raise InvalidInputError(f"unknown artifact format {fmt!r}; use one of {sorted(FILENAMES)}")
    return fmt


def encode(
    plain: bytes, *, fmt: str, model: str, version: int, keyring: KeyRing | None
) -> StoredArtifact:
    """The stored form of artifact bytes in ``fmt``: encrypted when a key ring is given."""
    digest = hashlib.sha256(plain).hexdigest()
    filename = FILENAMES[check_format(fmt)]
    if keyring is None:
        return StoredArtifact(filename, plain, digest, len(plain))
    sealed = encrypt(plain, keyring=keyring, artifact_id=f"{model}/{filename}", version=version)
    return StoredArtifact(filename + ENCRYPTED_SUFFIX, sealed, digest, len(plain))


def write_artifact(
    directory: Path,
    plain: bytes,
    *,
    fmt: str,
    model: str,
    version: int,
    keyring: KeyRing | None,
) -> tuple[str, int]:
    """Write serialised bytes into ``directory``; returns the file's name and size.

    With a key ring the bytes are sealed chunk by chunk straight into the file (the same bytes
    :func:`encode` returns), so no sealed copy of the whole artifact is built in memory. The
    caller makes ``directory`` appear atomically (:func:`inhouse.atomic.atomic_directory`).
    """
    filename = FILENAMES[fmt]
    if keyring is None:
        (directory / filename).write_bytes(plain)
        return filename, len(plain)
    artifact_id = f"{model}/{filename}"
    filename += ENCRYPTED_SUFFIX
    with open(directory / filename, "wb") as out:
        encrypt_to(out, plain, keyring=keyring, artifact_id=artifact_id, version=version)
        return filename, out.tell()


def upload_artifact(
    filesystem: pafs.FileSystem,
    directory: str,
    plain: bytes,
    *,
    fmt: str,
    model: str,
    version: int,
    keyring: KeyRing | None,
) -> tuple[str, int]:
    """:func:`write_artifact` onto object storage: the object ``<directory>/<file>``.

    The bytes uploaded are exactly those written to disk (sealed chunk by chunk with a key
    ring). The caller makes the version visible only after every object is uploaded.
    """
    filename = FILENAMES[fmt]
    if keyring is None:
        return filename, write_object(filesystem, f"{directory}/{filename}", plain)
    artifact_id = f"{model}/{filename}"
    filename += ENCRYPTED_SUFFIX
    size = seal_object(
        filesystem,
        f"{directory}/{filename}",
        plain,
        keyring=keyring,
        artifact_id=artifact_id,
        version=version,
    )
    return filename, size


def fetch_artifact(
    filesystem: pafs.FileSystem,
    path: str,
    *,
    fmt: str,
    model: str,
    version: int,
    sha256: str,
    keyring: KeyRing | None,
    encrypted: bool,
) -> bytes:
    """:func:`decode` of the object at ``path`` on object storage."""
    filename = FILENAMES[fmt]
    if encrypted and keyring is None:
        raise StorageError(f"{model} v{version} is encrypted; configure the key ring")
    try:
        if keyring is not None and encrypted:
            data = unseal_object(
                filesystem,
                path,
                keyring=keyring,
                artifact_id=f"{model}/{filename}",
                version=version,
            )
        else:
            data = read_object(filesystem, path)
    except FileNotFoundError:
        raise StorageError(f"{model} v{version}: {path} is missing") from None
    except OSError as exc:
        raise StorageError(f"{model} v{version}: cannot read {path}: {exc}") from None
    return _verified(data, model=model, version=version, sha256=sha256)


def _verified(data: bytes, *, model: str, version: int, sha256: str) -> bytes:
    if hashlib.sha256(data).hexdigest() != sha256:
        raise IntegrityError(f"weights of {model} v{version} do not match their hash")
    return data


def decode(
    path: Path,
    *,
    fmt: str,
    model: str,
    version: int,
    sha256: str,
    keyring: KeyRing | None,
    encrypted: bool,
) -> bytes:
    """The plaintext bytes of the artifact file at ``path`` (decrypted if needed), verified.

    An encrypted file is decrypted chunk by chunk as it is read: its sealed bytes are never held
    in memory whole.
    """
    filename = FILENAMES[fmt]
    if encrypted and keyring is None:
        raise StorageError(f"{model} v{version} is encrypted; configure the key ring")
    try:
        if keyring is not None and encrypted:
            # AES-GCM authenticates every chunk, bound to this model, file and version, but
            # anyone holding the master *public* key can seal a valid file: the plaintext's
            # SHA-256 from the SQL row is what ties the weights to the registered version.
            data = decrypt_file(
                path, keyring=keyring, artifact_id=f"{model}/{filename}", version=version
            )
        else:
            data = path.read_bytes()
    except FileNotFoundError:
        raise StorageError(f"{model} v{version}: {path.name} is missing") from None
    return _verified(data, model=model, version=version, sha256=sha256)
