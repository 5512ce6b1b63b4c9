"""Byte layout of an encrypted artifact, format version 1.

This module only encodes and parses bytes; it holds no keys. ``docs/artifact-format.md`` is the
normative description and must change together with this file::

    header  = magic "INHSART\\0" | u16 format_version | u8 cipher_id | u8 wrap_id | u32 chunk_size
              | 16B data_key_id | 32B key_fingerprint | u64 version | u16 len + artifact_id (UTF-8)
              | u8 len + key_id (ASCII)                       <- the RSA-OAEP label ends here
              | u16 len + wrapped_key
    frame   = u8 flag (0 more, 1 final) | 12B nonce | u32 len + AES-GCM ciphertext||tag
    aad     = magic | u16 format_version | data_key_id | u64 version | u16 len + artifact_id
              | u64 chunk_index | u8 flag

All integers are big-endian and unsigned.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from inhouse.errors import IntegrityError, InvalidInputError, UnsupportedFormatError

MAGIC = b"INHSART\x00"
FORMAT_VERSION = 1
CIPHER_AES_256_GCM = 1
WRAP_RSA_OAEP_SHA256 = 1

NONCE_SIZE = 12
TAG_SIZE = 16
DATA_KEY_SIZE = 32
DATA_KEY_ID_SIZE = 16
FINGERPRINT_SIZE = 32
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_CHUNK_SIZE = 1 << 26
MAX_ARTIFACT_ID_BYTES = 1024
MAX_VERSION = (1 << 64) - 1
FLAG_MORE = 0
FLAG_FINAL = 1

KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")

_FIXED = struct.Struct(">8sHBBI16s32sQ")  # magic .. version: 72 bytes
_FRAME = struct.Struct(">B12sI")  # flag, nonce, ciphertext length: 17 bytes
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")


def check_artifact_ref(artifact_id: str, version: int) -> bytes:
    """Validate an artifact id and version; return the id's UTF-8 bytes."""
    try:
        encoded = artifact_id.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError("artifact_id is not encodable as UTF-8") from exc
    if not 1 <= len(encoded) <= MAX_ARTIFACT_ID_BYTES:
        raise InvalidInputError(
            f"artifact_id must be 1..{MAX_ARTIFACT_ID_BYTES} UTF-8 bytes, got {len(encoded)}"
        )
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= MAX_VERSION:
        raise InvalidInputError(f"version must be an integer in 0..2**64-1, got {version!r}")
    return encoded


@dataclass(frozen=True)
class ArtifactHeader:
    """The parsed header of an encrypted artifact; unauthenticated until the key is unwrapped."""

    chunk_size: int
    data_key_id: bytes
    key_fingerprint: bytes
    version: int
    artifact_id: str
    key_id: str
    wrapped_key: bytes = field(repr=False)
    format_version: int = FORMAT_VERSION
    cipher_id: int = CIPHER_AES_256_GCM
    wrap_id: int = WRAP_RSA_OAEP_SHA256

    def authenticated_bytes(self) -> bytes:
        """The header up to and including the key id: the RSA-OAEP label."""
        artifact = self.artifact_id.encode("utf-8")
        key_id = self.key_id.encode("ascii")
        return b"".join(
            [
                _FIXED.pack(
                    MAGIC,
                    self.format_version,
                    self.cipher_id,
                    self.wrap_id,
                    self.chunk_size,
                    self.data_key_id,
                    self.key_fingerprint,
                    self.version,
                ),
                _U16.pack(len(artifact)),
                artifact,
                _U8.pack(len(key_id)),
                key_id,
            ]
        )

    def to_bytes(self) -> bytes:
        """The full header as written at the start of the file."""
        return self.authenticated_bytes() + _U16.pack(len(self.wrapped_key)) + self.wrapped_key

    @property
    def size(self) -> int:
        """Offset of the first chunk frame."""
        return len(self.to_bytes())


def _read_exact(stream: BinaryIO, size: int, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise IntegrityError(f"artifact is truncated inside the {what}")
    return data


def read_header(stream: BinaryIO) -> ArtifactHeader:
    """Parse a header from ``stream``, leaving it positioned at the first chunk frame.

    Raises:
        UnsupportedFormatError: not an artifact, or an unknown version or algorithm.
        IntegrityError: the header is truncated or malformed.
    """
    head = stream.read(len(MAGIC))
    if head != MAGIC:
        if len(head) < len(MAGIC) and MAGIC.startswith(head):
            raise IntegrityError("artifact is truncated inside the header")
        raise UnsupportedFormatError("not an inhouse encrypted artifact (bad magic bytes)")
    fixed = head + _read_exact(stream, _FIXED.size - len(MAGIC), "header")
    _, fmt, cipher_id, wrap_id, chunk_size, data_key_id, fingerprint, version = _FIXED.unpack(fixed)
    if fmt != FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"artifact format version {fmt} is not supported (this build reads {FORMAT_VERSION})"
        )
    if cipher_id != CIPHER_AES_256_GCM or wrap_id != WRAP_RSA_OAEP_SHA256:
        raise UnsupportedFormatError(
            f"unsupported algorithms in artifact header (cipher {cipher_id}, key wrap {wrap_id})"
        )
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise IntegrityError(f"artifact header has an invalid chunk size ({chunk_size})")
    (artifact_len,) = _U16.unpack(_read_exact(stream, _U16.size, "header"))
    if not 1 <= artifact_len <= MAX_ARTIFACT_ID_BYTES:
        raise IntegrityError("artifact header has an invalid artifact id length")
    try:
        artifact_id = _read_exact(stream, artifact_len, "header").decode("utf-8")
        (key_len,) = _U8.unpack(_read_exact(stream, _U8.size, "header"))
        key_id = _read_exact(stream, key_len, "header").decode("ascii")
    except UnicodeDecodeError as exc:
        raise IntegrityError("artifact header holds an undecodable id") from exc
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise IntegrityError("artifact header holds an invalid key id")
    (wrapped_len,) = _U16.unpack(_read_exact(stream, _U16.size, "header"))
    wrapped_key = _read_exact(stream, wrapped_len, "wrapped key")
    return ArtifactHeader(
        format_version=fmt,
        cipher_id=cipher_id,
        wrap_id=wrap_id,
        chunk_size=chunk_size,
        data_key_id=data_key_id,
        key_fingerprint=fingerprint,
        version=version,
        artifact_id=artifact_id,
        key_id=key_id,
        wrapped_key=wrapped_key,
    )


def chunk_aad(
    *, data_key_id: bytes, artifact_id: str, version: int, index: int, final: bool
) -> bytes:
    """Associated data of one chunk: binds it to its artifact, version, data key and position."""
    artifact = artifact_id.encode("utf-8")
    return b"".join(
        [
            MAGIC,
            _U16.pack(FORMAT_VERSION),
            data_key_id,
            _U64.pack(version),
            _U16.pack(len(artifact)),
            artifact,
            _U64.pack(index),
            _U8.pack(FLAG_FINAL if final else FLAG_MORE),
        ]
    )


def frame_head(*, final: bool, nonce: bytes, length: int) -> bytes:
    """The fixed part of a chunk frame: flag, nonce and ciphertext length."""
    return _FRAME.pack(FLAG_FINAL if final else FLAG_MORE, nonce, length)


def encode_frame(*, final: bool, nonce: bytes, ciphertext: bytes) -> bytes:
    """One chunk frame: flag, nonce, length and AES-GCM ciphertext with its tag."""
    return frame_head(final=final, nonce=nonce, length=len(ciphertext)) + ciphertext


def read_frame(stream: BinaryIO, *, chunk_size: int) -> tuple[bool, bytes, bytes] | None:
    """Read the next frame as ``(final, nonce, ciphertext)``; ``None`` at end of file."""
    head = stream.read(_FRAME.size)
    if not head:
        return None
    if len(head) != _FRAME.size:
        raise IntegrityError("artifact is truncated inside a chunk frame")
    flag, nonce, length = _FRAME.unpack(head)
    if flag not in (FLAG_MORE, FLAG_FINAL):
        raise IntegrityError(f"chunk frame has an invalid flag byte ({flag})")
    if not TAG_SIZE <= length <= chunk_size + TAG_SIZE:
        raise IntegrityError(f"chunk frame has an invalid length ({length})")
    return flag == FLAG_FINAL, nonce, _read_exact(stream, length, "chunk data")
