"""Streaming atomic writes, for artifacts too large to build in memory first.

Same contract as :func:`inhouse.atomic.atomic_write_bytes` (temporary sibling, fsync,
``os.replace``; a full disk raises :class:`~inhouse.errors.StorageError` and leaves nothing
behind), but the caller writes through a file object.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from inhouse.errors import StorageError

_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], *, mode: int = 0o600) -> Iterator[BinaryIO]:
    """Yield a file that replaces ``path`` atomically only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if exc.errno in _DISK_ERRNOS:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StorageError(f"cannot write {target}: {reason}") from exc
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
