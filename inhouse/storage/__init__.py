"""Where artifacts live: local directories or S3-compatible object storage, via pyarrow.fs.

:func:`filesystem_for` turns a storage URI (a path or ``s3://bucket/prefix``) and the
``storage`` settings section into a ``pyarrow.fs.FileSystem`` and a path on it; the registry,
Ray Train's checkpoint storage and data imports use it. :mod:`inhouse.storage.objects` reads
and writes whole objects, sealed with the key ring exactly as files on disk are;
:func:`inhouse.storage.runs.runs_storage` says where Ray Train keeps checkpoints (it imports
pyarrow, which the rest of the package imports only when a store is used).
"""

from inhouse.storage.credentials import Credentials, read_credentials_file
from inhouse.storage.filesystem import (
    check_sealed,
    display_uri,
    filesystem_for,
    is_local_filesystem,
    is_remote,
    s3_filesystem,
)

__all__ = [
    "Credentials",
    "check_sealed",
    "display_uri",
    "filesystem_for",
    "is_local_filesystem",
    "is_remote",
    "read_credentials_file",
    "s3_filesystem",
]
