"""Reading and writing whole objects on a pyarrow filesystem, sealed or in the clear.

An S3 object appears whole when its upload completes (a multipart upload is invisible until it
is completed), but a failed writer cannot always abort it: callers write under a key nobody
references yet and make it visible afterwards (the registry commits its SQL row last).
Sealed objects are encrypted and decrypted chunk by chunk as they stream, so neither the
sealed nor a second plaintext copy of a large artifact is held in memory.
"""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING, Any

from inhouse.crypto import KeyRing
from inhouse.crypto.envelope import encrypt_to
from inhouse.crypto.sealing import open_chunks

if TYPE_CHECKING:  # pyarrow is imported where a store is used: the CLI stays fast
    from pyarrow import fs as pafs

# One ranged GET per block: each GET costs a round trip (and on some servers a pass over the
# object), so blocks are large; memory stays bounded by one block plus the plaintext.
READ_BLOCK = 64 * 1024 * 1024


class _Counting:
    """A write-only sink that counts the bytes passed to the stream it wraps."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.size = 0

    def write(self, data: Any) -> int:
        self.stream.write(data)
        self.size += len(data)
        return len(data)


class _ExactReader:
    """``read(n)`` returning exactly ``n`` bytes (fewer only at the end), in large blocks."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.buffer = b""
        self.offset = 0

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            rest = self.buffer[self.offset :] + self.handle.read()
            self.buffer, self.offset = b"", 0
            return bytes(rest)
        pieces = []
        wanted = size
        while wanted > 0:
            if self.offset >= len(self.buffer):
                self.buffer, self.offset = self.handle.read(max(READ_BLOCK, wanted)), 0
                if not self.buffer:
                    break
            piece = self.buffer[self.offset : self.offset + wanted]
            self.offset += len(piece)
            wanted -= len(piece)
            pieces.append(piece)
        return b"".join(pieces)


def read_object(filesystem: pafs.FileSystem, path: str) -> bytes:
    """The bytes of the object at ``path`` (one GET); FileNotFoundError when there is none."""
    # A random-access file reads the whole object in one request; an input stream reads it
    # in many small ones (7x slower here).
    with filesystem.open_input_file(path) as handle:
        return bytes(handle.read())


def write_object(filesystem: pafs.FileSystem, path: str, data: bytes) -> int:
    """Upload ``data`` as the object at ``path``; returns its size."""
    with filesystem.open_output_stream(path) as out:
        out.write(data)
    return len(data)


def seal_object(
    filesystem: pafs.FileSystem,
    path: str,
    plaintext: bytes,
    *,
    keyring: KeyRing,
    artifact_id: str,
    version: int,
) -> int:
    """Encrypt ``plaintext`` straight into the object at ``path``; returns the sealed size."""
    with filesystem.open_output_stream(path) as out:
        sink = _Counting(out)
        encrypt_to(sink, plaintext, keyring=keyring, artifact_id=artifact_id, version=version)  # type: ignore[arg-type]
    return sink.size


def unseal_object(
    filesystem: pafs.FileSystem, path: str, *, keyring: KeyRing, artifact_id: str, version: int
) -> bytes:
    """The verified plaintext of the sealed object at ``path`` (none unless all is intact)."""
    # As decrypt_file: one buffer sized once to the object (longer than its plaintext), each
    # chunk copied in as soon as it is verified, then trimmed; getvalue() does not copy.
    plaintext = io.BytesIO()
    with filesystem.open_input_file(path) as handle:
        size = handle.size()
        if size:
            plaintext.seek(size - 1)
            plaintext.write(b"\0")
            plaintext.seek(0)
        reader = _ExactReader(handle)
        for piece in open_chunks(
            reader,  # type: ignore[arg-type]
            keyring=keyring,
            artifact_id=artifact_id,
            version=version,
        ):
            plaintext.write(piece)
    plaintext.truncate()
    return plaintext.getvalue()


def delete_tree(filesystem: pafs.FileSystem, path: str) -> None:
    """Remove ``path`` and everything under it, if present (best effort cleanup)."""
    with contextlib.suppress(OSError):
        filesystem.delete_dir(path)
