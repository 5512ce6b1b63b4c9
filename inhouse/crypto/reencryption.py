"""Re-encryption: seal an artifact again under a fresh data key, for a compromised master key.

:func:`~inhouse.crypto.envelope.rewrap` is cheap (one RSA operation, header only) but keeps the
data key: anyone holding an old copy of the file and the old private key can unwrap that data key
and read the current file. :func:`reencrypt` closes this: it decrypts the whole artifact, seals
the plaintext under a new random data key (and data key id) wrapped by the active master key,
keeping the header's artifact id, version and chunk size, so the chunk AAD binding is unchanged.

The replacement is atomic and verified: the new file is written to a temporary sibling
(``.<name>.<random>.tmp``, which :func:`~inhouse.crypto.rotation.find_artifacts` skips), fsynced,
read back and checked to decrypt to the same plaintext (SHA-256) before ``os.replace``. The old
file must authenticate completely first, so tampered data is never re-sealed as valid. A crash at
any point leaves the old file or the new one, both readable while the old key is decrypt-only.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from inhouse.atomic import fsync_dir
from inhouse.crypto import format as fmt
from inhouse.crypto.format import ArtifactHeader
from inhouse.crypto.keyring import KeyRing
from inhouse.crypto.sealing import open_chunks, seal
from inhouse.errors import ConflictError, IntegrityError, StorageError

PathLike = str | os.PathLike[str]

_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _hashing(pieces: Iterable[bytes], update: Callable[[bytes], None]) -> Iterator[bytes]:
    for piece in pieces:
        update(piece)
        yield piece


def _plaintext_digest(stream: BinaryIO, header: ArtifactHeader, keyring: KeyRing) -> bytes:
    digest = hashlib.sha256()
    for piece in open_chunks(
        stream, keyring=keyring, artifact_id=header.artifact_id, version=header.version
    ):
        digest.update(piece)
    return digest.digest()


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def reencrypt(path: PathLike, *, keyring: KeyRing) -> ArtifactHeader:
    """Re-encrypt the artifact at ``path`` under a fresh data key wrapped by the active key.

    Returns the new header. Unlike :func:`~inhouse.crypto.envelope.rewrap` this always rewrites
    the whole file, even if it is already wrapped by the active key (it may hold a data key that
    a rotated-out key can unwrap from an older copy).

    Raises:
        KeyNotFoundError, IntegrityError, UnsupportedFormatError: the artifact cannot be
            decrypted; it is left as it was.
        ConflictError: another process replaced or removed the file meanwhile; it is left so.
        StorageError: the new file could not be written; the old one is left as it was.
    """
    target = Path(path)
    tmp_name: str | None = None
    try:
        with open(target, "rb") as handle:
            before = os.fstat(handle.fileno())
            header = fmt.read_header(handle)
            handle.seek(0)
            source_digest = hashlib.sha256()
            fd, tmp_name = tempfile.mkstemp(
                dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
            )
            os.fchmod(fd, stat.S_IMODE(before.st_mode))
            with os.fdopen(fd, "wb") as out:
                plaintext = open_chunks(
                    handle,
                    keyring=keyring,
                    artifact_id=header.artifact_id,
                    version=header.version,
                )
                # Chunks are written to the temporary file as they arrive; it only replaces
                # the artifact once open_chunks has authenticated every chunk of the old file.
                new_header = seal(
                    out,
                    _hashing(plaintext, source_digest.update),
                    keyring=keyring,
                    artifact_id=header.artifact_id,
                    version=header.version,
                    chunk_size=header.chunk_size,
                )
                out.flush()
                os.fsync(out.fileno())
        with open(tmp_name, "rb") as written:
            if _plaintext_digest(written, new_header, keyring) != source_digest.digest():
                raise IntegrityError(f"re-encrypted copy of {target} does not match the original")
        if _identity(os.stat(target)) != _identity(before):
            raise ConflictError(f"{target} was replaced while being re-encrypted; run it again")
        os.replace(tmp_name, target)
        tmp_name = None
        fsync_dir(target.parent)
    except FileNotFoundError as exc:
        raise ConflictError(f"{target} was removed while being re-encrypted") from exc
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        what = "write" if exc.errno in _DISK_ERRNOS else "re-encrypt"
        raise StorageError(f"cannot {what} {target}: {reason}") from exc
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
    return new_header
