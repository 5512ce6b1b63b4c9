"""``inhouse keys`` over object storage: the sealed objects in the configured buckets.

``keys rotate``/``reencrypt`` re-wrap or re-encrypt them; ``keys retire`` refuses a key they
still need (:mod:`inhouse.storage.rotation` does the work).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from inhouse.errors import InhouseError

if TYPE_CHECKING:
    from inhouse.config import Settings
    from inhouse.crypto.keyring import KeyRing


def objects_use(settings: Settings, key_id: str) -> bool:
    """Whether sealed objects in the configured buckets still need ``key_id`` (says which)."""
    from inhouse.storage.rotation import object_key_usage, remote_roots

    try:
        for filesystem, root in remote_roots(settings):
            usage = object_key_usage(filesystem, root)
            users = usage.get(key_id, []) + usage.get("?", [])
            if users:
                print(
                    f"error: key {key_id!r} still wraps {len(users)} object(s), e.g. {users[0]}; "
                    "run `inhouse keys rotate` (it covers the configured buckets) first",
                    file=sys.stderr,
                )
                return True
    except (InhouseError, OSError) as exc:
        print(f"error: cannot check the objects in storage: {exc}", file=sys.stderr)
        return True
    return False


def rotate_objects_in_storage(settings: Settings, ring: KeyRing, *, reencrypt: bool) -> int:
    """Re-wrap or re-encrypt the sealed objects of ``storage.registry_uri`` and ``runs_uri``."""
    from inhouse.storage.rotation import remote_roots, rotate_objects

    try:
        for filesystem, root in remote_roots(settings):
            report = rotate_objects(filesystem, root, keyring=ring, reencrypt_all=reencrypt)
            verb = "re-encrypted" if reencrypt else "re-wrapped"
            print(f"{verb} {len(report.changed)} object(s) in s3://{root}; "
                  f"{len(report.unchanged)} unchanged, {len(report.failed)} failed")  # fmt: skip
            for shown, reason in report.failed:
                print(f"error: {shown}: {reason}", file=sys.stderr)
            if report.failed:
                return 1
    except (InhouseError, OSError) as exc:
        print(f"error: rotating the objects in storage: {exc}", file=sys.stderr)
        return 1
    return 0
