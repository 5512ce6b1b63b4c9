"""Which lineage fields the SQL row may hold, and reading the whole lineage from its file.

A version's lineage mixes facts every layer needs (data set, row range, parent, privacy flags,
compression and gate settings) with statistics computed on the training rows (the global
importance of each feature, its comparison with the champion). The metadata database is not
encrypted by inhouse, so its ``model_versions.lineage`` column holds only the fields named
in :data:`PUBLIC_LINEAGE_KEYS` (an allowlist: a new field stays out until someone decides it
is not a statistic of rows). The whole lineage lives in ``lineage.json[.enc]`` beside the
weights, encrypted like them; :meth:`inhouse.registry.Registry.full_lineage` reads it.

Registries written before this split kept the whole lineage in the row:
:func:`scrub_sql_lineage` strips the other fields from such rows when a registry is opened.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select, text, update

from inhouse.crypto import KeyRing, decrypt
from inhouse.db import session_scope
from inhouse.errors import StorageError
from inhouse.registry.artifacts import ENCRYPTED_SUFFIX
from inhouse.registry.records import ModelVersionRecord
from inhouse.storage.objects import read_object

if TYPE_CHECKING:  # pyarrow is imported where a store is used: the CLI stays fast
    from pyarrow import fs as pafs

LINEAGE_FILE = "lineage.json"

# What listing, the coordinator, compression, audits and jobs read from ``ModelVersion.lineage``.
# Never add a field computed on training rows (importances, means, histograms, samples).
PUBLIC_LINEAGE_KEYS: frozenset[str] = frozenset(
    {
        "dataset",
        "rows",  # row ids and counts
        "parent",
        "base",
        "source",
        "privacy",  # dp flag, epsilon, delta, ledger charge
        "config",
        "code_revision",
        "run",
        "run_dir",
        "coordinator_run",
        "trigger",
        "warm_start",
        "compression",
        "gate",
        "search",  # a tuning run's space and per-trial metrics (like ``metrics``)
        "builder",  # the user code a version runs: function, kwargs, source file hash
    }
)

_scrubbed: set[str] = set()
_scrub_lock = threading.Lock()


def public_lineage(lineage: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``lineage`` the SQL row may hold (see :data:`PUBLIC_LINEAGE_KEYS`)."""
    return {key: value for key, value in lineage.items() if key in PUBLIC_LINEAGE_KEYS}


def sensitive_keys(lineage: dict[str, Any]) -> list[str]:
    """The fields of ``lineage`` kept out of the SQL row, sorted."""
    return sorted(key for key in lineage if key not in PUBLIC_LINEAGE_KEYS)


def read_lineage_file(
    directory: Path, *, model: str, version: int, encrypted: bool, keyring: KeyRing | None
) -> dict[str, Any]:
    """The whole lineage of one version, from ``lineage.json[.enc]`` in its directory.

    Raises:
        StorageError: the file is missing or unreadable, or encrypted without a key ring.
        CryptoError: the encrypted file was tampered with or belongs to another version.
    """
    name = LINEAGE_FILE + (ENCRYPTED_SUFFIX if encrypted else "")
    try:
        data = (directory / name).read_bytes()
    except OSError as exc:
        raise StorageError(f"{model} v{version}: cannot read {name}: {exc.strerror}") from None
    return parse_lineage(data, model=model, version=version, encrypted=encrypted, keyring=keyring)


def fetch_lineage(
    filesystem: pafs.FileSystem,
    directory: str,
    *,
    model: str,
    version: int,
    encrypted: bool,
    keyring: KeyRing | None,
) -> dict[str, Any]:
    """:func:`read_lineage_file` of a version on object storage (``directory`` on it)."""
    name = LINEAGE_FILE + (ENCRYPTED_SUFFIX if encrypted else "")
    try:
        data = read_object(filesystem, f"{directory}/{name}")
    except OSError as exc:
        raise StorageError(f"{model} v{version}: cannot read {directory}/{name}: {exc}") from None
    return parse_lineage(data, model=model, version=version, encrypted=encrypted, keyring=keyring)


def parse_lineage(
    data: bytes, *, model: str, version: int, encrypted: bool, keyring: KeyRing | None
) -> dict[str, Any]:
    """The lineage in the (sealed) bytes of a version's lineage file."""
    name = LINEAGE_FILE + (ENCRYPTED_SUFFIX if encrypted else "")
    if encrypted:
        if keyring is None:
            raise StorageError(f"{model} v{version} is encrypted; configure the key ring")
        data = decrypt(
            data, keyring=keyring, artifact_id=f"{model}/{LINEAGE_FILE}", version=version
        )
    try:
        document = json.loads(data)
    except ValueError:
        raise StorageError(f"{model} v{version}: {name} is not JSON") from None
    lineage = document.get("lineage") if isinstance(document, dict) else None
    if not isinstance(lineage, dict):
        raise StorageError(f"{model} v{version}: {name} holds no lineage")
    return lineage


def scrub_sql_lineage(engine: Engine) -> int:
    """Strip non-public lineage fields from rows written by older versions; returns how many.

    Runs once per database per process (the registry calls it when opened). On SQLite the
    rewrite runs with ``secure_delete`` so the old values are overwritten, not just freed.
    """
    key = str(engine.url)
    with _scrub_lock:
        if key in _scrubbed:
            return 0
        changed = 0
        sqlite = engine.dialect.name == "sqlite"
        with session_scope(engine) as session:
            rows = session.execute(
                select(
                    ModelVersionRecord.model, ModelVersionRecord.version, ModelVersionRecord.lineage
                )
            ).all()
            stale = [
                (m, v, lin) for m, v, lin in rows if isinstance(lin, dict) and sensitive_keys(lin)
            ]
            secure_delete = None
            if stale and sqlite:
                secure_delete = int(session.execute(text("PRAGMA secure_delete")).scalar_one())
                session.execute(text("PRAGMA secure_delete=ON"))
            for model, version, lineage in stale:
                session.execute(
                    update(ModelVersionRecord)
                    .where(ModelVersionRecord.model == model, ModelVersionRecord.version == version)
                    .values(lineage=public_lineage(lineage))
                )
                changed += 1
            if secure_delete is not None:  # the pooled connection goes back as it came
                session.execute(text(f"PRAGMA secure_delete={secure_delete}"))
        _scrubbed.add(key)
        return changed
