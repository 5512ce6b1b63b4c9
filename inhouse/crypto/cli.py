"""``inhouse keys init|rotate|rewrap|list|retire``: the master key ring from the command line.

``inhouse/cli.py`` mounts this with :func:`add_keys_command` and dispatches to :func:`run_keys`;
``python -m inhouse.crypto.cli keys …`` runs it on its own. The ring lives in ``--key-dir``,
else ``$INHOUSE_KEY_DIR``, else the default the caller passes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from inhouse.crypto.keyring import KEY_DIR_ENV, KeyRing
from inhouse.crypto.manifest import KeyState
from inhouse.crypto.rotation import rewrap_all, rotate, usage_checker
from inhouse.errors import ConfigError, InhouseError


def add_keys_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    default_key_dir: str | None = None,
) -> None:
    """Register ``keys`` and its sub-commands on an argparse sub-parser set."""
    keys = subparsers.add_parser("keys", help="manage the master keys that encrypt artifacts")
    keys.add_argument(
        "--key-dir",
        default=None,
        help=f"key ring directory (default: ${KEY_DIR_ENV}, else {default_key_dir or 'none'})",
    )
    keys.set_defaults(default_key_dir=default_key_dir)
    actions = keys.add_subparsers(dest="keys_action", required=True)
    actions.add_parser("init", help="create the key ring and its first key (idempotent)")
    rot = actions.add_parser("rotate", help="make a new active key; the old one turns decrypt-only")
    rot.add_argument(
        "--rewrap",
        nargs="+",
        default=[],
        metavar="PATH",
        help="artifact files or directories whose data keys to re-wrap under the new key",
    )
    rew = actions.add_parser("rewrap", help="re-wrap artifacts under the active key")
    rew.add_argument("paths", nargs="+", metavar="PATH")
    lst = actions.add_parser("list", help="list keys with their state and fingerprint")
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ret = actions.add_parser("retire", help="delete a decrypt-only key no artifact uses")
    ret.add_argument("key_id")
    group = ret.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--artifacts",
        nargs="+",
        metavar="PATH",
        help="refuse if any artifact under these paths still uses the key",
    )
    group.add_argument(
        "--force", action="store_true", help="retire without checking artifacts (unrecoverable)"
    )


def _ring(args: argparse.Namespace) -> KeyRing:
    path = args.key_dir or os.environ.get(KEY_DIR_ENV) or args.default_key_dir
    if not path:
        raise ConfigError(f"no key directory: pass --key-dir or set {KEY_DIR_ENV}")
    return KeyRing(path)


def run_keys(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Run a parsed ``keys`` command; errors print one line to stderr and return 1."""
    stream = out or sys.stdout
    try:
        ring = _ring(args)
        action = args.keys_action
        if action == "init":
            existed = ring.exists()
            record = ring.init()
            print(
                f"active key {record.id}" + (" (already present)" if existed else ""), file=stream
            )
        elif action == "rotate":
            old = ring.active()
            report = rotate(keyring=ring, artifacts=args.rewrap)
            print(f"active key {report.key.id}; {old.id} is now decrypt-only", file=stream)
            if args.rewrap:
                print(f"re-wrapped {len(report.rewrapped)} artifact(s)", file=stream)
        elif action == "rewrap":
            report = rewrap_all(args.paths, keyring=ring)
            print(
                f"re-wrapped {len(report.rewrapped)} artifact(s) under {report.key.id}; "
                f"{len(report.unchanged)} already were",
                file=stream,
            )
        elif action == "list":
            _print_list(ring, as_json=args.json, out=stream)
        elif action == "retire":
            in_use = None if args.force else usage_checker(args.artifacts)
            record = ring.retire(args.key_id, in_use=in_use)
            print(f"retired key {record.id}", file=stream)
        else:  # pragma: no cover - argparse restricts the choices
            raise ConfigError(f"unknown keys action {action!r}")
    except InhouseError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return 0


def _print_list(ring: KeyRing, *, as_json: bool, out: TextIO) -> None:
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


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m inhouse.crypto.cli keys …``."""
    parser = argparse.ArgumentParser(prog="inhouse")
    add_keys_command(parser.add_subparsers(dest="command", required=True))
    return run_keys(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
