"""Where Ray Train keeps a run's checkpoints: a local directory, a shared one, or S3.

Separate from :mod:`inhouse.storage.filesystem` because it also needs
:mod:`inhouse.storage.portable` (which builds its clients through the former).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inhouse.storage.filesystem import check_sealed, filesystem_for, is_local_filesystem
from inhouse.storage.portable import portable_s3

if TYPE_CHECKING:
    from pyarrow import fs as pafs

    from inhouse.config import Settings


def runs_storage(settings: Settings) -> tuple[str, pafs.FileSystem | None]:
    """Ray Train's ``storage_path`` and ``storage_filesystem`` for training runs.

    ``storage.runs_uri`` when set (a directory every node shares, or ``s3://bucket/prefix``),
    else ``<home>/runs/ray``. The filesystem is None for a local directory (Ray's default).
    Checkpoints are sealed before Ray uploads them, so the store holds no plaintext. An S3
    filesystem is :func:`inhouse.storage.portable.portable_s3`: Ray pickles it to every worker
    as the storage settings, and each worker reads its own node's credentials.
    """
    uri = settings.storage.runs_uri
    if uri is None:
        return str(settings.runs_dir / "ray"), None
    check_sealed(settings, uri)
    filesystem, path = filesystem_for(uri, settings)
    if is_local_filesystem(filesystem):
        return path, None
    return path, portable_s3(settings.storage)  # pickled to workers without the keys
