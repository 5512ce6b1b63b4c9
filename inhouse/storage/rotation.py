"""Key rotation for sealed artifacts on object storage (registry versions, checkpoints).

``inhouse keys`` walks local directories (:mod:`inhouse.crypto.rotation`); objects in a bucket
are covered here. Only sealed bytes move: an object is downloaded into a private temporary
directory, re-wrapped or re-encrypted there with the same code as a local file, and uploaded
again, replacing the object whole (an S3 PUT is atomic: readers see the old or the new bytes,
both of which decrypt while the old key is decrypt-only). Which master key an object needs is
read from its header alone (one small ranged GET), so ``keys retire`` can refuse a key that
objects still use.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pyarrow import fs as pafs

from inhouse.crypto import MAGIC, KeyRing, read_header, reencrypt, rewrap
from inhouse.errors import ConflictError, CryptoError
from inhouse.storage.filesystem import display_uri, filesystem_for, is_remote
from inhouse.storage.objects import read_object, write_object

if TYPE_CHECKING:
    from inhouse.config import Settings

HEADER_BYTES = 64 * 1024  # far more than a header (ids, fingerprint, an RSA-wrapped key)


@dataclass
class ObjectRotation:
    """What a rotation did to the objects under one root."""

    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def remote_roots(settings: Settings) -> list[tuple[pafs.FileSystem, str]]:
    """The object-storage roots inhouse writes sealed artifacts to (registry and runs)."""
    uris = (settings.storage.registry_uri, settings.storage.runs_uri)
    return [filesystem_for(uri, settings) for uri in uris if uri is not None and is_remote(uri)]


def sealed_objects(filesystem: pafs.FileSystem, root: str) -> list[str]:
    """Every object under ``root`` that starts with the artifact magic bytes."""
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    found = []
    for info in filesystem.get_file_info(selector):
        if info.type != pafs.FileType.File or not info.size or info.size < len(MAGIC):
            continue
        with filesystem.open_input_file(info.path) as handle:
            if handle.read(len(MAGIC)) == MAGIC:
                found.append(info.path)
    return sorted(found)


def object_key_usage(filesystem: pafs.FileSystem, root: str) -> dict[str, list[str]]:
    """Which master key id wraps which sealed objects under ``root`` (``?``: unreadable)."""
    usage: dict[str, list[str]] = {}
    for path in sealed_objects(filesystem, root):
        with filesystem.open_input_file(path) as handle:
            head = bytes(handle.read(HEADER_BYTES))
        try:
            key_id = read_header(head).key_id
        except CryptoError:
            key_id = "?"
        usage.setdefault(key_id, []).append(display_uri(filesystem, path))
    return usage


def rotate_objects(
    filesystem: pafs.FileSystem, root: str, *, keyring: KeyRing, reencrypt_all: bool = False
) -> ObjectRotation:
    """Re-wrap (default) or re-encrypt every sealed object under ``root`` with the active key.

    Raises:
        StorageError: a download or upload failed; objects done so far stay done.
    """
    report = ObjectRotation()
    with tempfile.TemporaryDirectory(prefix="inhouse-rotate-") as tmp:
        local = Path(tmp) / "artifact"
        for path in sealed_objects(filesystem, root):
            shown = display_uri(filesystem, path)
            original = read_object(filesystem, path)
            local.write_bytes(original)
            try:
                if reencrypt_all:
                    reencrypt(local, keyring=keyring)
                else:
                    rewrap(local, keyring=keyring)
            except (CryptoError, ConflictError) as exc:
                report.failed.append((shown, exc.message))
                continue
            updated = local.read_bytes()
            if updated == original:
                report.unchanged.append(shown)
                continue
            write_object(filesystem, path, updated)
            report.changed.append(shown)
    return report
