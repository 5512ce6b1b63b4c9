"""What ``inhouse keys`` prints: the key list and the summary of a re-encryption."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TextIO

from inhouse.crypto.keyring import KeyRing
from inhouse.crypto.manifest import KeyState
from inhouse.crypto.rotation import RotationReport


def print_reencrypted(
    report: RotationReport, *, paths: Sequence[str], old_id: str | None, out: TextIO
) -> int:
    """Summary of a re-encryption; 1 if any artifact could not be re-encrypted."""
    print(
        f"re-encrypted {len(report.reencrypted)} artifact(s) under fresh data keys wrapped by "
        f"{report.key.id}",
        file=out,
    )
    if report.changed:
        print(
            f"{len(report.changed)} artifact(s) were replaced or removed by another writer "
            "meanwhile and left so (new writes get fresh data keys):",
            file=out,
        )
        for path in report.changed:
            print(f"  {path}", file=out)
    if report.failed:
        print(
            f"error: {len(report.failed)} artifact(s) could not be re-encrypted and still use "
            "their old data keys:",
            file=sys.stderr,
        )
        for path, reason in report.failed:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    retire = f"inhouse keys retire {old_id or 'OLD_ID'} --artifacts {' '.join(paths) or 'PATH'}"
    print(f"next, once every copy of the key ring is updated: {retire}", file=out)
    return 0


def print_list(ring: KeyRing, *, as_json: bool, out: TextIO) -> None:
    """The key ring's keys: a table, or JSON with ``as_json``."""
    records = ring.list()
    if as_json:
        rows = [
            {
                "id": r.id,
                "state": r.state.value,
                "created_at": r.created_at.isoformat(),
                "fingerprint": r.fingerprint,
                "retired_at": r.retired_at.isoformat() if r.retired_at else None,
            }
            for r in records
        ]
        print(json.dumps(rows, indent=2), file=out)
        return
    if not records:
        print(f"no keys in {ring.path}; run `inhouse keys init`", file=out)
        return
    print(f"{'ID':<22} {'STATE':<13} {'CREATED':<20} FINGERPRINT (SHA-256)", file=out)
    for r in records:
        marker = "" if r.state is not KeyState.RETIRED else " (private key deleted)"
        created = r.created_at.strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"{r.id:<22} {r.state.value:<13} {created:<20} {r.fingerprint[:32]}{marker}", file=out
        )
