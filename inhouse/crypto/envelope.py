"""Envelope encryption of artifacts: a fresh AES-256-GCM data key per artifact, RSA-OAEP wrapped.

Plaintext is cut into chunks (1 MiB by default), each sealed with its own random nonce and an
AAD binding the artifact id, version, data key id, chunk index and final flag. The header's
master key fields are bound through the RSA-OAEP label, so :func:`rewrap` can move an artifact
to a new master key by rewriting the header alone. Decryption returns nothing until every
chunk has been verified. The byte layout is specified in ``docs/artifact-format.md``; the
chunk stream itself is sealed and opened by :mod:`inhouse.crypto.sealing`.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from inhouse.atomic import atomic_writer
from inhouse.crypto import format as fmt
from inhouse.crypto.format import ArtifactHeader
from inhouse.crypto.keyring import KeyRing
from inhouse.crypto.manifest import KeyState
from inhouse.crypto.sealing import Plaintext, open_chunks, seal, unwrap_key, wrap_key
from inhouse.errors import KeyNotFoundError

PathLike = str | os.PathLike[str]


class _Pieces:
    """A write-only sink that keeps the pieces and joins them once (no BytesIO copies)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(data)
        return len(data)


class _BufferReader:
    """``read(n)`` over an in-memory artifact; large reads are zero-copy memoryviews."""

    def __init__(self, blob: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(blob).cast("B")
        self._pos = 0

    def read(self, size: int = -1) -> Any:
        end = len(self._view) if size < 0 else min(self._pos + size, len(self._view))
        piece = self._view[self._pos : end]
        self._pos = end
        return piece if len(piece) > 4096 else bytes(piece)


def _read_chunks(handle: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    while piece := handle.read(chunk_size):
        yield piece


def encrypt(
    plaintext: Plaintext,
    *,
    keyring: KeyRing,
    artifact_id: str,
    version: int,
    chunk_size: int = fmt.DEFAULT_CHUNK_SIZE,
) -> bytes:
    """Encrypt bytes (or an iterable of byte pieces) under the key ring's active key."""
    out = _Pieces()
    seal(
        out,  # type: ignore[arg-type]
        plaintext,
        keyring=keyring,
        artifact_id=artifact_id,
        version=version,
        chunk_size=chunk_size,
    )
    return b"".join(out.parts)


def encrypt_to(
    out: BinaryIO,
    plaintext: Plaintext,
    *,
    keyring: KeyRing,
    artifact_id: str,
    version: int,
    chunk_size: int = fmt.DEFAULT_CHUNK_SIZE,
) -> ArtifactHeader:
    """Encrypt into an open binary file chunk by chunk: the bytes :func:`encrypt` returns.

    The sealed artifact is never built in memory whole. Making the file appear atomically is
    the caller's job (:func:`encrypt_file` does it for a single file).
    """
    return seal(
        out,
        plaintext,
        keyring=keyring,
        artifact_id=artifact_id,
        version=version,
        chunk_size=chunk_size,
    )


def decrypt(blob: bytes, *, keyring: KeyRing, artifact_id: str, version: int) -> bytes:
    """Decrypt and verify a whole artifact held in memory.

    Raises:
        UnsupportedFormatError, KeyNotFoundError, IntegrityError: nothing is returned.
    """
    stream = _BufferReader(blob)
    return b"".join(
        open_chunks(stream, keyring=keyring, artifact_id=artifact_id, version=version)  # type: ignore[arg-type]
    )


def encrypt_file(
    src: PathLike | Plaintext,
    dst: PathLike,
    *,
    keyring: KeyRing,
    artifact_id: str,
    version: int,
    chunk_size: int = fmt.DEFAULT_CHUNK_SIZE,
    mode: int = 0o600,
) -> ArtifactHeader:
    """Encrypt a file (path) or bytes to ``dst`` atomically, streaming chunk by chunk."""
    with contextlib.ExitStack() as stack:
        if isinstance(src, str | os.PathLike):
            source: Plaintext = _read_chunks(stack.enter_context(open(src, "rb")), chunk_size)
        else:
            source = src
        out = stack.enter_context(atomic_writer(dst, mode=mode))
        return seal(
            out,
            source,
            keyring=keyring,
            artifact_id=artifact_id,
            version=version,
            chunk_size=chunk_size,
        )


def decrypt_file(path: PathLike, *, keyring: KeyRing, artifact_id: str, version: int) -> bytes:
    """Decrypt and verify the artifact at ``path``; returns its plaintext only if all is intact."""
    # Each chunk is copied out as soon as it is verified, so only one chunk of plaintext and
    # one of ciphertext are alive besides the result (a join would hold every chunk, then copy
    # them all). The buffer is sized once to the file (longer than its plaintext) instead of
    # growing, then trimmed; getvalue() hands it over without a copy.
    plaintext = io.BytesIO()
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size:
            plaintext.seek(size - 1)
            plaintext.write(b"\0")
            plaintext.seek(0)
        for piece in open_chunks(handle, keyring=keyring, artifact_id=artifact_id, version=version):
            plaintext.write(piece)
    plaintext.truncate()
    return plaintext.getvalue()


def decrypt_to_file(
    src: PathLike,
    dst: PathLike,
    *,
    keyring: KeyRing,
    artifact_id: str,
    version: int,
    mode: int = 0o600,
) -> None:
    """Decrypt ``src`` into ``dst`` with bounded memory; ``dst`` appears only if all is intact."""
    with open(src, "rb") as handle, atomic_writer(dst, mode=mode) as out:
        for piece in open_chunks(handle, keyring=keyring, artifact_id=artifact_id, version=version):
            out.write(piece)


def read_header(source: bytes | PathLike) -> ArtifactHeader:
    """Parse an artifact's header without any key; its fields are not yet authenticated."""
    if isinstance(source, bytes):
        return fmt.read_header(io.BytesIO(source))
    with open(source, "rb") as handle:
        return fmt.read_header(handle)


def rewrap(path: PathLike, *, keyring: KeyRing, new_key_id: str | None = None) -> ArtifactHeader:
    """Re-wrap an artifact's data key under ``new_key_id`` (default: the active key).

    Only the header changes; the chunk frames are copied byte for byte and the file is replaced
    atomically. A no-op if the artifact already uses that key.
    """
    target = keyring.active() if new_key_id is None else keyring.get(new_key_id)
    if target.state is KeyState.RETIRED:
        raise KeyNotFoundError(f"key {target.id!r} is retired; it cannot wrap artifacts")
    with open(path, "rb") as handle:
        header = fmt.read_header(handle)
        if header.key_id == target.id and header.key_fingerprint.hex() == target.fingerprint:
            return header
        data_key = unwrap_key(header, keyring)
        moved = replace(
            header,
            key_id=target.id,
            key_fingerprint=bytes.fromhex(target.fingerprint),
            wrapped_key=b"",
        )
        new_header = wrap_key(moved, data_key, keyring)
        file_mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        with atomic_writer(Path(path), mode=file_mode) as out:
            out.write(new_header.to_bytes())
            shutil.copyfileobj(handle, out)
    return new_header
