"""Where a version's files go: a local directory renamed into place, or objects on S3.

On disk a version is ``<root>/<model>/v<version>/``, built under a temporary name and renamed
into place (a concurrent writer of the same number finds it taken). Object storage has no
atomic rename, so each attempt uploads under a prefix of its own,
``<root>/<model>/v<version>-<random>/``, never overwriting anything; the SQL row, committed
after every object is uploaded, names that prefix and is what makes the version visible. An
attempt that loses the race for its number deletes its objects; a crash between upload and
commit leaves an unreferenced prefix, never a half-visible version.
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inhouse.atomic import atomic_directory
from inhouse.crypto import KeyRing, encrypt
from inhouse.errors import StorageError
from inhouse.registry.artifacts import (
    ENCRYPTED_SUFFIX,
    FILENAMES,
    decode,
    fetch_artifact,
    upload_artifact,
    write_artifact,
)
from inhouse.registry.lineage import LINEAGE_FILE, fetch_lineage, read_lineage_file
from inhouse.storage import display_uri, is_local_filesystem
from inhouse.storage.objects import delete_tree, write_object

if TYPE_CHECKING:  # pyarrow is imported where a store is used: the CLI stays fast
    from pyarrow import fs as pafs


class NumberTaken(Exception):
    """Another writer created this version's directory first: try the next number."""


def sealed_lineage(
    document: dict[str, Any], *, model: str, version: int, keyring: KeyRing | None
) -> tuple[str, bytes]:
    """The lineage file's name and bytes: encrypted like the weights with a key ring."""
    data = json.dumps(document, indent=2, default=str).encode()
    if keyring is None:
        return LINEAGE_FILE, data
    sealed = encrypt(data, keyring=keyring, artifact_id=f"{model}/{LINEAGE_FILE}", version=version)
    return LINEAGE_FILE + ENCRYPTED_SUFFIX, sealed


class VersionFiles:
    """The registry's storage: ``root`` on ``filesystem`` (default: the local disk)."""

    def __init__(self, root: Path | str, filesystem: pafs.FileSystem | None = None) -> None:
        self.remote = filesystem is not None and not is_local_filesystem(filesystem)
        self._filesystem = filesystem
        self.root = str(root).rstrip("/") if self.remote else str(Path(root))

    @property
    def filesystem(self) -> pafs.FileSystem:
        """The object store (or, when given one, the local filesystem) the versions are on."""
        if self._filesystem is None:
            from pyarrow import fs as pafs

            self._filesystem = pafs.LocalFileSystem()
        return self._filesystem

    def relative(self, model: str, version: int) -> str:
        """The version's place under the root (what the SQL row records)."""
        if self.remote:
            return f"{model}/v{version}-{secrets.token_hex(6)}"
        return f"{model}/v{version}"

    def path(self, relative: str) -> Path:
        """The version's directory (on object storage: its key prefix as a path)."""
        return Path(self.root) / relative

    def uri(self, relative: str) -> str:
        """The version's location as a person writes it (a path or ``s3://...``)."""
        if not self.remote:
            return str(self.path(relative))
        return display_uri(self.filesystem, f"{self.root}/{relative}")

    def write(
        self,
        relative: str,
        plain: bytes,
        lineage: dict[str, Any],
        *,
        fmt: str,
        model: str,
        version: int,
        keyring: KeyRing | None,
    ) -> int:
        """Store the artifact and lineage of one version; returns the artifact's stored size.

        Raises:
            NumberTaken: (on disk) a concurrent writer created this version first.
            StorageError: the disk or the object store refused the write.
        """
        name, lineage_bytes = sealed_lineage(lineage, model=model, version=version, keyring=keyring)
        sealing: dict[str, Any] = {"fmt": fmt, "model": model, "version": version}
        if self.remote:
            target = f"{self.root}/{relative}"
            try:
                _, size = upload_artifact(
                    self.filesystem, target, plain, keyring=keyring, **sealing
                )
                write_object(self.filesystem, f"{target}/{name}", lineage_bytes)
            except OSError as exc:
                delete_tree(self.filesystem, target)
                raise StorageError(
                    f"cannot upload version {model} v{version} to {self.uri(relative)}: {exc}"
                ) from exc
            return size
        directory = self.path(relative)
        if directory.exists():
            shutil.rmtree(directory)  # an orphan of a crash before the row was committed
        try:
            with atomic_directory(directory) as tmp:
                _, size = write_artifact(tmp, plain, keyring=keyring, **sealing)
                (tmp / name).write_bytes(lineage_bytes)
        except OSError as exc:
            if directory.exists():
                raise NumberTaken(relative) from exc
            raise StorageError(f"cannot write version {model} v{version}: {exc}") from exc
        return size

    def discard(self, relative: str) -> None:
        """Drop the objects of an upload whose SQL row lost the race for its number."""
        if self.remote:
            delete_tree(self.filesystem, f"{self.root}/{relative}")

    def read_artifact(
        self,
        relative: str,
        *,
        fmt: str,
        model: str,
        version: int,
        sha256: str,
        keyring: KeyRing | None,
        encrypted: bool,
    ) -> bytes:
        """The verified plaintext artifact of one version."""
        filename = FILENAMES[fmt] + (ENCRYPTED_SUFFIX if encrypted else "")
        opening: dict[str, Any] = {
            "fmt": fmt,
            "model": model,
            "version": version,
            "sha256": sha256,
            "keyring": keyring,
            "encrypted": encrypted,
        }
        if self.remote:
            path = f"{self.root}/{relative}/{filename}"
            return fetch_artifact(self.filesystem, path, **opening)
        return decode(self.path(relative) / filename, **opening)

    def read_lineage(
        self, relative: str, *, model: str, version: int, encrypted: bool, keyring: KeyRing | None
    ) -> dict[str, Any]:
        """The whole lineage of one version, from its (sealed) lineage file."""
        opening: dict[str, Any] = {
            "model": model,
            "version": version,
            "encrypted": encrypted,
            "keyring": keyring,
        }
        if self.remote:
            return fetch_lineage(self.filesystem, f"{self.root}/{relative}", **opening)
        return read_lineage_file(self.path(relative), **opening)
