"""Envelope encryption of artifacts: a fresh AES-256-GCM data key per artifact, RSA-OAEP wrapped.

Plaintext is cut into chunks (1 MiB by default), each sealed with its own random nonce and an
AAD binding the artifact id, version, data key id, chunk index and final flag. The header's
master key fields are bound through the RSA-OAEP label, so :func:`rewrap` can move an artifact
to a new master key by rewriting the header alone. Decryption returns nothing until every
chunk has been verified. The byte layout is specified in ``docs/artifact-format.md``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from inhouse.atomic import atomic_writer
from inhouse.crypto import format as fmt
from inhouse.crypto.format import ArtifactHeader
from inhouse.crypto.keyring import KeyRing
from inhouse.crypto.manifest import KeyState
from inhouse.errors import ConfigError, IntegrityError, KeyNotFoundError

PathLike = str | os.PathLike[str]
Plaintext = bytes | bytearray | memoryview | Iterable[bytes]


def _oaep(label: bytes) -> padding.OAEP:
    return padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=label
    )


def _rechunk(source: Plaintext, chunk_size: int) -> Iterator[tuple[bytes | memoryview, bool]]:
    """Yield ``(piece, is_final)``: full chunks, then one final chunk of 0..chunk_size bytes."""
    if isinstance(source, bytes | bytearray | memoryview):
        # Zero-copy slices of an in-memory buffer: copying dominated the cost before.
        view = memoryview(source).cast("B")
        total = len(view)
        starts = range(0, total, chunk_size) if total else range(1)
        for start in starts:
            end = min(start + chunk_size, total)
            yield view[start:end], end == total
        return
    buf = bytearray()
    for part in source:
        buf += part
        # Emit only when more bytes are known to follow, so the last chunk gets the final flag.
        while len(buf) > chunk_size:
            yield bytes(buf[:chunk_size]), False
            del buf[:chunk_size]
    yield bytes(buf), True


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


def _seal(
    out: BinaryIO,
    source: Plaintext,
    *,
    keyring: KeyRing,
    artifact_id: str,
    version: int,
    chunk_size: int,
) -> ArtifactHeader:
    fmt.check_artifact_ref(artifact_id, version)
    if not 1 <= chunk_size <= fmt.MAX_CHUNK_SIZE:
        raise ConfigError(f"chunk_size must be in 1..{fmt.MAX_CHUNK_SIZE}, got {chunk_size}")
    record = keyring.active()
    data_key = AESGCM.generate_key(bit_length=256)
    unwrapped = ArtifactHeader(
        chunk_size=chunk_size,
        data_key_id=os.urandom(fmt.DATA_KEY_ID_SIZE),
        key_fingerprint=bytes.fromhex(record.fingerprint),
        version=version,
        artifact_id=artifact_id,
        key_id=record.id,
        wrapped_key=b"",
    )
    header = _wrap(unwrapped, data_key, keyring)
    out.write(header.to_bytes())
    aead = AESGCM(data_key)
    for index, (piece, final) in enumerate(_rechunk(source, chunk_size)):
        nonce = os.urandom(fmt.NONCE_SIZE)
        aad = fmt.chunk_aad(
            data_key_id=header.data_key_id,
            artifact_id=artifact_id,
            version=version,
            index=index,
            final=final,
        )
        ciphertext = aead.encrypt(nonce, piece, aad)
        out.write(fmt.frame_head(final=final, nonce=nonce, length=len(ciphertext)))
        out.write(ciphertext)
    return header


def _wrap(header: ArtifactHeader, data_key: bytes, keyring: KeyRing) -> ArtifactHeader:
    public = keyring.public_key(header.key_id)
    wrapped = public.encrypt(data_key, _oaep(header.authenticated_bytes()))
    return replace(header, wrapped_key=wrapped)


def _unwrap(header: ArtifactHeader, keyring: KeyRing) -> bytes:
    private = keyring.private_key(header.key_id, expected_fingerprint=header.key_fingerprint.hex())
    try:
        data_key = private.decrypt(header.wrapped_key, _oaep(header.authenticated_bytes()))
    except ValueError as exc:
        raise IntegrityError(
            f"artifact header or wrapped key was tampered with (key {header.key_id})"
        ) from exc
    if len(data_key) != fmt.DATA_KEY_SIZE:
        raise IntegrityError("artifact wraps a data key of the wrong length")
    return data_key


def _open(stream: BinaryIO, *, keyring: KeyRing, artifact_id: str, version: int) -> Iterator[bytes]:
    """Verify header and key, then yield plaintext chunks.

    The caller must use none of them until the iterator is exhausted: a later chunk may fail.
    """
    fmt.check_artifact_ref(artifact_id, version)
    header = fmt.read_header(stream)
    if header.artifact_id != artifact_id or header.version != version:
        raise IntegrityError(
            f"artifact holds {header.artifact_id!r} version {header.version}, "
            f"not {artifact_id!r} version {version}"
        )
    aead = AESGCM(_unwrap(header, keyring))
    index = 0
    while True:
        frame = fmt.read_frame(stream, chunk_size=header.chunk_size)
        if frame is None:
            where = f"chunk {index - 1} is not the final one" if index else "it has no chunks"
            raise IntegrityError(f"artifact is truncated: {where}")
        final, nonce, ciphertext = frame
        if not final and len(ciphertext) != header.chunk_size + fmt.TAG_SIZE:
            raise IntegrityError(f"chunk {index} is short but not marked final")
        aad = fmt.chunk_aad(
            data_key_id=header.data_key_id,
            artifact_id=artifact_id,
            version=version,
            index=index,
            final=final,
        )
        try:
            piece = aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag as exc:
            raise IntegrityError(
                f"chunk {index} failed authentication (tampered, reordered, spliced or wrong "
                "artifact)"
            ) from exc
        yield piece
        if final:
            break
        index += 1
    if stream.read(1):
        raise IntegrityError(f"artifact has trailing data after its final chunk {index}")


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
    _seal(
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
    return _seal(
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
        _open(stream, keyring=keyring, artifact_id=artifact_id, version=version)  # type: ignore[arg-type]
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
        return _seal(
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
        for piece in _open(handle, keyring=keyring, artifact_id=artifact_id, version=version):
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
        for piece in _open(handle, keyring=keyring, artifact_id=artifact_id, version=version):
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
        data_key = _unwrap(header, keyring)
        moved = replace(
            header,
            key_id=target.id,
            key_fingerprint=bytes.fromhex(target.fingerprint),
            wrapped_key=b"",
        )
        new_header = _wrap(moved, data_key, keyring)
        file_mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        with atomic_writer(Path(path), mode=file_mode) as out:
            out.write(new_header.to_bytes())
            shutil.copyfileobj(handle, out)
    return new_header
