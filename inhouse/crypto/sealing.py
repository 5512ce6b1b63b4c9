"""The sealed chunk stream under an artifact's header: seal, open, wrap and unwrap the data key.

Plaintext is cut into chunks, each sealed with AES-256-GCM under the artifact's data key, its
own random nonce and an AAD binding the artifact id, version, data key id, chunk index and
final flag. The data key is RSA-OAEP wrapped with the header's authenticated bytes as the
label. The public API over files and buffers is :mod:`inhouse.crypto.envelope`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from inhouse.crypto import format as fmt
from inhouse.crypto.format import ArtifactHeader
from inhouse.crypto.keyring import KeyRing
from inhouse.errors import ConfigError, IntegrityError

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


def seal(
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
    header = wrap_key(unwrapped, data_key, keyring)
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


def wrap_key(header: ArtifactHeader, data_key: bytes, keyring: KeyRing) -> ArtifactHeader:
    public = keyring.public_key(header.key_id)
    wrapped = public.encrypt(data_key, _oaep(header.authenticated_bytes()))
    return replace(header, wrapped_key=wrapped)


def unwrap_key(header: ArtifactHeader, keyring: KeyRing) -> bytes:
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


def open_chunks(
    stream: BinaryIO, *, keyring: KeyRing, artifact_id: str, version: int
) -> Iterator[bytes]:
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
    aead = AESGCM(unwrap_key(header, keyring))
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
