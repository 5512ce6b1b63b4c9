"""The key ring manifest: what is known about each master key, kept as a small JSON file.

``keyring.json`` holds no secret; it is written atomically with mode 0600 all the same::

    {"format": 1, "keys": [{"id": "mk-20250101-1a2b3c4d", "created_at": "...+00:00",
                            "state": "active", "fingerprint": "<64 hex>", "retired_at": null}]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from inhouse.atomic import atomic_write_bytes
from inhouse.crypto.format import KEY_ID_PATTERN
from inhouse.errors import ConfigError

MANIFEST_FORMAT = 1


class KeyState(StrEnum):
    """Lifecycle of a master key."""

    ACTIVE = "active"
    DECRYPT_ONLY = "decrypt-only"
    RETIRED = "retired"


@dataclass(frozen=True)
class KeyRecord:
    """What the manifest says about one master key (never the key itself)."""

    id: str
    created_at: datetime
    state: KeyState
    fingerprint: str
    retired_at: datetime | None = None


def fingerprint(public_key: rsa.RSAPublicKey) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo: 32 bytes that identify the key material."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize()


def load_manifest(path: Path) -> list[KeyRecord]:
    """Parse the manifest; :class:`ConfigError` if it is corrupt or inconsistent."""
    try:
        data: Any = json.loads(path.read_bytes())
        if data.get("format") != MANIFEST_FORMAT:
            raise ConfigError(f"key ring manifest {path} has an unknown format")
        records = [_record_from_json(item) for item in data["keys"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"key ring manifest {path} is corrupt") from exc
    if sum(r.state is KeyState.ACTIVE for r in records) > 1:
        raise ConfigError(f"key ring manifest {path} has several active keys")
    if len({r.id for r in records}) != len(records):
        raise ConfigError(f"key ring manifest {path} has duplicate key ids")
    return records


def save_manifest(path: Path, records: list[KeyRecord]) -> None:
    """Write the manifest atomically, mode 0600."""
    body = {"format": MANIFEST_FORMAT, "keys": [_record_to_json(r) for r in records]}
    atomic_write_bytes(path, json.dumps(body, indent=2).encode() + b"\n", mode=0o600)


def _record_to_json(record: KeyRecord) -> dict[str, str | None]:
    return {
        "id": record.id,
        "created_at": record.created_at.isoformat(),
        "state": record.state.value,
        "fingerprint": record.fingerprint,
        "retired_at": record.retired_at.isoformat() if record.retired_at else None,
    }


def _record_from_json(item: dict[str, Any]) -> KeyRecord:
    key_id = str(item["id"])
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise ValueError(f"invalid key id {key_id!r}")
    retired_at = item.get("retired_at")
    return KeyRecord(
        id=key_id,
        created_at=datetime.fromisoformat(item["created_at"]),
        state=KeyState(item["state"]),
        fingerprint=str(item["fingerprint"]),
        retired_at=datetime.fromisoformat(retired_at) if retired_at else None,
    )
