"""An S3 filesystem that crosses process boundaries as its settings, never as its keys.

Ray Train pickles ``storage_filesystem`` to its controller and every training worker. A
``pyarrow.fs.S3FileSystem`` built with explicit keys would carry them inside the pickle (into
Ray's object store and logs of its arguments). :func:`portable_s3` wraps it in a
``PyFileSystem`` whose handler pickles as the ``storage`` settings alone (no secret: the
credentials file is a path) and builds the real filesystem on first use in each process, from
that node's credentials file, ``AWS_*`` variables or instance role. Data still streams through
pyarrow's native S3 client: the handler only forwards calls. Every node that trains must then
hold its own credentials (the same file path, or an instance role).
"""

from __future__ import annotations

from typing import Any

from pyarrow import fs as pafs

from inhouse.config.storage import StorageSettings


class SettingsS3Handler(pafs.FileSystemHandler):  # type: ignore[misc]
    """Forwards every call to an S3 filesystem built from ``storage`` in this process."""

    def __init__(self, storage: StorageSettings) -> None:
        self.storage = storage
        self._filesystem: pafs.S3FileSystem | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (SettingsS3Handler, (self.storage,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SettingsS3Handler) and other.storage == self.storage

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self.storage.model_dump_json())

    @property
    def fs(self) -> pafs.S3FileSystem:
        if self._filesystem is None:
            from inhouse.storage.filesystem import s3_filesystem

            # Synchronous uploads: Ray Train copies checkpoints with threads only for a plain
            # S3FileSystem's downloads (apache/arrow#32372); with background writes, copy
            # tasks would wait on the same IO pool their uploads need.
            self._filesystem = s3_filesystem(self.storage, background_writes=False)
        return self._filesystem

    def get_type_name(self) -> str:
        return "inhouse-s3"

    def normalize_path(self, path: str) -> str:
        return str(self.fs.normalize_path(path))

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return list(self.fs.get_file_info(paths))

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return list(self.fs.get_file_info(selector))

    def create_dir(self, path: str, recursive: bool) -> None:
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("refusing to delete every bucket's contents")

    def delete_file(self, path: str) -> None:
        self.fs.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.fs.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.fs.copy_file(src, dest)

    def open_input_stream(self, path: str) -> Any:
        return self.fs.open_input_stream(path)

    def open_input_file(self, path: str) -> Any:
        return self.fs.open_input_file(path)

    def open_output_stream(self, path: str, metadata: Any) -> Any:
        return self.fs.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path: str, metadata: Any) -> Any:
        return self.fs.open_append_stream(path, metadata=metadata)


def portable_s3(storage: StorageSettings) -> pafs.FileSystem:
    """The S3 filesystem of ``storage`` as one that pickles without credentials."""
    return pafs.PyFileSystem(SettingsS3Handler(storage))
