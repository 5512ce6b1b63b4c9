"""Master key rotation across many artifacts: rotate, re-wrap or re-encrypt, then retire.

The registry knows where artifacts live; these helpers take the paths (files or directories,
searched recursively for files that start with the artifact magic, whatever their name) and do
the rest::

    new = rotate(keyring=ring, artifacts=[registry_root])       # new active key, headers re-wrapped
    ring.retire(old_id, in_use=usage_checker([registry_root]))  # refused while still in use

Re-wrapping (routine rotation) keeps every data key, so an old copy of a file plus the old
private key still decrypts the current file. After a suspected key compromise pass
``reencrypt=True``: every artifact is sealed again under a fresh data key
(:func:`inhouse.crypto.reencryption.reencrypt`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from inhouse.crypto import format as fmt
from inhouse.crypto.envelope import read_header, rewrap
from inhouse.crypto.keyring import KeyRing
from inhouse.crypto.manifest import KeyRecord
from inhouse.crypto.reencryption import reencrypt
from inhouse.errors import ConflictError, CryptoError, StorageError

PathLike = str | os.PathLike[str]
Progress = Callable[[int, int], None]
"""Called as ``progress(artifacts_done, artifacts_total)`` after each artifact."""


@dataclass(frozen=True)
class RotationReport:
    """Outcome of re-wrapping or re-encrypting a set of artifacts under one key.

    ``changed`` lists artifacts another process replaced or removed while they were being
    re-encrypted (left so); ``failed`` those that could not be decrypted, with the reason.
    """

    key: KeyRecord
    rewrapped: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    reencrypted: list[Path] = field(default_factory=list)
    changed: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def _is_artifact(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(fmt.MAGIC)) == fmt.MAGIC
    except OSError:
        return False


def find_artifacts(roots: Iterable[PathLike]) -> Iterator[Path]:
    """Every encrypted artifact under ``roots`` (files are taken as given, directories walked)."""
    for root in roots:
        base = Path(root)
        if base.is_file():
            if _is_artifact(base):
                yield base
            continue
        for directory, _, names in sorted(os.walk(base)):
            for name in sorted(names):
                candidate = Path(directory) / name
                # Temporary siblings of atomic writes are not artifacts yet.
                if not name.endswith(".tmp") and candidate.is_file() and _is_artifact(candidate):
                    yield candidate


def key_usage(roots: Iterable[PathLike]) -> dict[str, list[Path]]:
    """Which master key id wraps which artifacts under ``roots``."""
    usage: dict[str, list[Path]] = {}
    for path in find_artifacts(roots):
        try:
            key_id = read_header(path).key_id
        except CryptoError:
            # An unreadable header cannot say which key it needs; count it against every key.
            key_id = "?"
        usage.setdefault(key_id, []).append(path)
    return usage


def usage_checker(roots: Iterable[PathLike]) -> Callable[[str], bool]:
    """An ``in_use`` hook for :meth:`KeyRing.retire` that scans ``roots`` when called."""
    frozen = [Path(root) for root in roots]

    def in_use(key_id: str) -> bool:
        usage = key_usage(frozen)
        return key_id in usage or "?" in usage

    return in_use


def rewrap_all(
    artifacts: Iterable[PathLike],
    *,
    keyring: KeyRing,
    new_key_id: str | None = None,
    progress: Progress | None = None,
) -> RotationReport:
    """Re-wrap every artifact under ``artifacts`` to ``new_key_id`` (default: the active key)."""
    target = keyring.active() if new_key_id is None else keyring.get(new_key_id)
    report = RotationReport(key=target)
    paths = list(find_artifacts(artifacts))
    for done, path in enumerate(paths, start=1):
        before = read_header(path)
        after = rewrap(path, keyring=keyring, new_key_id=target.id)
        (report.unchanged if after == before else report.rewrapped).append(path)
        if progress is not None:
            progress(done, len(paths))
    return report


def reencrypt_all(
    artifacts: Iterable[PathLike], *, keyring: KeyRing, progress: Progress | None = None
) -> RotationReport:
    """Re-encrypt every artifact under ``artifacts`` under fresh data keys and the active key.

    Each file is replaced atomically on its own, so it can be interrupted and run again. An
    artifact that cannot be decrypted is left as it is and listed in ``failed``; the others go
    on. A :class:`~inhouse.errors.StorageError` (disk full, read-only) stops the run.
    """
    report = RotationReport(key=keyring.active())
    paths = list(find_artifacts(artifacts))
    for done, path in enumerate(paths, start=1):
        try:
            reencrypt(path, keyring=keyring)
        except ConflictError:
            report.changed.append(path)
        except StorageError as exc:
            raise StorageError(
                f"{exc.message} (after re-encrypting {len(report.reencrypted)} of {len(paths)} "
                "artifacts; the rest keep their old data keys)"
            ) from exc
        except CryptoError as exc:
            report.failed.append((path, exc.message))
        else:
            report.reencrypted.append(path)
        if progress is not None:
            progress(done, len(paths))
    return report


def rotate(
    *,
    keyring: KeyRing,
    artifacts: Iterable[PathLike],
    private_key: rsa.RSAPrivateKey | None = None,
    reencrypt: bool = False,
    progress: Progress | None = None,
) -> RotationReport:
    """Make a new active key and re-wrap (or re-encrypt) every artifact under ``artifacts``.

    Re-wrapping is for routine rotation. ``reencrypt=True`` is for a compromised key: each
    artifact gets a fresh data key, so old copies plus the old private key do not decrypt it.
    If it stops half-way, run :func:`rewrap_all` (or :func:`reencrypt_all`) to finish; the
    artifacts not done yet stay readable with their decrypt-only key meanwhile.
    """
    roots = list(artifacts)
    new = keyring.rotate(private_key=private_key)
    if reencrypt:
        return reencrypt_all(roots, keyring=keyring, progress=progress)
    return rewrap_all(roots, keyring=keyring, new_key_id=new.id, progress=progress)
