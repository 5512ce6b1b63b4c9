"""What the audit log stores: an entry, a pending event, the report of a verification, the hash.

Each entry's ``hash`` is SHA-256 over the canonical JSON of its fields, ``prev_hash``
included (:func:`entry_hash`); :mod:`inhouse.access.audit` appends and verifies the chain.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Literal, NamedTuple

from inhouse.access.records import AuditRecord
from inhouse.errors import InvalidInputError

Outcome = Literal["allow", "deny", "error"]
OUTCOMES: frozenset[str] = frozenset({"allow", "deny", "error"})
_LIMITS = {"principal": 128, "action": 64, "resource": 128, "request_id": 128, "detail": 4000}


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the audit log, as stored."""

    id: int
    ts: datetime
    principal: str
    action: str
    resource: str
    outcome: str
    request_id: str | None
    detail: str | None
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``ts`` as ISO 8601 UTC)."""
        data = asdict(self)
        data["ts"] = _ts_text(self.ts)
        return data


@dataclass(frozen=True)
class VerifyReport:
    """The result of :meth:`AuditLog.verify`.

    Attributes:
        ok: every entry and the chain head are consistent.
        checked: entries checked.
        broken_at: id of the first entry that fails (or the first missing id), else None.
        reason: one line saying what is wrong, else None.
        head_seq: id of the last entry according to the chain head.
        head_hash: hash of the last entry according to the chain head (anchor it elsewhere).
    """

    ok: bool
    checked: int
    broken_at: int | None
    reason: str | None
    head_seq: int
    head_hash: str


class AuditEvent(NamedTuple):
    """A decision waiting to be appended: an entry's fields and when it happened.

    A tuple, so queueing one on a request's hot path costs next to nothing; the fields are
    cleaned (made printable, bounded) only when written.
    """

    ts: datetime
    principal: str
    action: str
    resource: str
    outcome: Outcome
    request_id: str | None = None
    detail: str | None = None


def _ts_text(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _clean(value: str | None, field: str) -> str | None:
    """Make caller-supplied text safe to store: printable, bounded."""
    if value is None:
        return None
    text = str(value)
    if not text.isprintable():  # the common case skips the per-character pass
        text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text[: _LIMITS[field]]


def audit_fields(
    principal: str,
    action: str,
    resource: str,
    outcome: str,
    request_id: str | None,
    detail: str | None,
) -> dict[str, Any]:
    if outcome not in OUTCOMES:
        raise InvalidInputError(f"audit outcome {outcome!r} must be allow, deny or error")
    return {
        "principal": _clean(principal, "principal") or "-",
        "action": _clean(action, "action") or "-",
        "resource": _clean(resource, "resource") or "-",
        "outcome": outcome,
        "request_id": _clean(request_id, "request_id"),
        "detail": _clean(detail, "detail"),
    }


def entry_hash(fields: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of an entry's fields, ``prev_hash`` included."""
    payload = {k: fields[k] for k in AuditEntry.__dataclass_fields__ if k != "hash"}
    payload["ts"] = _ts_text(payload["ts"])
    data = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def entry_of(row: AuditRecord) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        ts=row.ts,
        principal=row.principal,
        action=row.action,
        resource=row.resource,
        outcome=row.outcome,
        request_id=row.request_id,
        detail=row.detail,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )
