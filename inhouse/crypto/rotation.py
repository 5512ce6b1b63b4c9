"""Master key rotation across many artifacts: rotate, re-wrap every header, then retire.

The registry knows where artifacts live; these helpers take the paths (files or directories,
searched recursively for files that start with the artifact magic) and do the rest::

    new = rotate(keyring=ring, artifacts=[registry_root])       # new active key, headers re-wrapped
    ring.retire(old_id, in_use=usage_checker([registry_root]))  # refused while still in use
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
from inhouse.errors import CryptoError

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class RotationReport:
    """Outcome of re-wrapping a set of artifacts under one key."""

    key: KeyRecord
    rewrapped: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)


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
    artifacts: Iterable[PathLike], *, keyring: KeyRing, new_key_id: str | None = None
) -> RotationReport:
    """Re-wrap every artifact under ``artifacts`` to ``new_key_id`` (default: the active key)."""
    target = keyring.active() if new_key_id is None else keyring.get(new_key_id)
    report = RotationReport(key=target)
    for path in find_artifacts(artifacts):
        before = read_header(path)
        after = rewrap(path, keyring=keyring, new_key_id=target.id)
        (report.unchanged if after == before else report.rewrapped).append(path)
    return report


def rotate(
    *,
    keyring: KeyRing,
    artifacts: Iterable[PathLike],
    private_key: rsa.RSAPrivateKey | None = None,
) -> RotationReport:
    """Make a new active key and re-wrap every artifact under ``artifacts`` with it.

    If it stops half-way, run :func:`rewrap_all` to finish: artifacts already on the active key
    are left alone, and the rest are still readable with their decrypt-only key meanwhile.
    """
    roots = list(artifacts)
    new = keyring.rotate(private_key=private_key)
    return rewrap_all(roots, keyring=keyring, new_key_id=new.id)
