"""``inhouse keys init|rotate|rewrap|reencrypt|list|retire``: the master key ring from the CLI.

:func:`add_parser` registers ``keys``; ``inhouse`` calls :func:`cmd_keys`, which checks the
caller and fills in the state directory's defaults, then :func:`run_keys`.
``python -m inhouse.cli.keys_cmd keys …`` runs it on its own. The ring lives in ``--key-dir``,
else ``$INHOUSE_KEY_DIR``, else the default the caller passes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from inhouse.cli.keys_objects import objects_use, rotate_objects_in_storage
from inhouse.cli.keys_report import print_list, print_reencrypted
from inhouse.crypto.keyring import KEY_DIR_ENV, KeyRing
from inhouse.crypto.rotation import (
    Progress,
    reencrypt_all,
    rewrap_all,
    rotate,
    usage_checker,
)
from inhouse.errors import ConfigError, InhouseError

if TYPE_CHECKING:
    from inhouse.config import Settings


def add_parser(
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
    keys.set_defaults(default_key_dir=default_key_dir, handler=cmd_keys)
    actions = keys.add_subparsers(dest="keys_action", required=True)
    actions.add_parser("init", help="create the key ring and its first key (idempotent)")
    rot = actions.add_parser(
        "rotate",
        help="make a new active key; the old one turns decrypt-only",
        description="Make a new active key; the old one turns decrypt-only until `retire`.",
        epilog=WHICH_ROTATION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    how = rot.add_mutually_exclusive_group()
    how.add_argument(
        "--rewrap",
        nargs="+",
        default=[],
        metavar="PATH",
        help="routine rotation: re-wrap the data keys of the artifacts under these files or "
        "directories (headers only; data keys unchanged)",
    )
    how.add_argument(
        "--reencrypt",
        nargs="*",
        default=None,
        metavar="PATH",
        help="key compromise: re-encrypt every artifact under these paths with a fresh data key "
        "(reads and rewrites all data)",
    )
    rew = actions.add_parser(
        "rewrap",
        help="re-wrap artifacts under the active key (finishes an interrupted rotate)",
        epilog=WHICH_ROTATION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rew.add_argument("paths", nargs="+", metavar="PATH", help="artifact files or directories")
    ree = actions.add_parser(
        "reencrypt",
        help="re-encrypt artifacts under fresh data keys and the active key "
        "(finishes an interrupted rotate --reencrypt)",
        epilog=WHICH_ROTATION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ree.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="artifact files or directories (default: the registry and runs directories)",
    )
    lst = actions.add_parser("list", help="list keys with their state and fingerprint")
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ret = actions.add_parser("retire", help="delete a decrypt-only key no artifact uses")
    ret.add_argument("key_id", help="the key's id, as `keys list` shows it (mk-...)")
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


WHICH_ROTATION = """\
which to use:
  re-wrap (default)  routine rotation on a schedule, with no sign that a key was exposed.
                     Rewrites each artifact's header only, so it is fast, but the data keys
                     stay the same: an old copy of a file (a backup) plus the old private key
                     still decrypts the current file, even after `retire`.
  --reencrypt        a private key may have leaked (key file or key ring backup copied, host
                     breached, someone with access to it left). Decrypts every artifact and
                     seals it again under a fresh data key wrapped by the new key: costs a full
                     read and write of every artifact. Each file is replaced atomically after
                     it verifies; if it stops, run `keys reencrypt` on the same paths. Then
                     retire the old key: `keys retire OLD_ID --artifacts PATH ...`.
  Without PATH, `inhouse keys rotate` covers its registry and runs directories, and the
  buckets of storage.registry_uri / storage.runs_uri.
"""


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    """``inhouse keys …`` on the state directory's key ring; no paths: every artifact we wrote."""
    from inhouse.cli.auth import authorize

    args.default_key_dir = str(settings.key_dir)
    if args.keys_action != "list":
        authorize(settings, action="keys:admin", resource="*", detail=f"keys {args.keys_action}")
    # Without paths, cover every artifact we wrote: registry versions and training checkpoints.
    ours = [str(p) for p in (settings.registry_dir, settings.runs_dir) if p.exists()]
    # ... and, when storage.registry_uri / runs_uri name a bucket, the sealed objects there.
    buckets = False
    if args.keys_action == "rotate" and args.reencrypt is not None:
        buckets, args.reencrypt = not args.reencrypt, args.reencrypt or ours
    elif args.keys_action == "rotate":
        buckets, args.rewrap = not args.rewrap, args.rewrap or ours
    elif args.keys_action == "reencrypt" and not args.paths:
        buckets, args.paths = True, ours
    if args.keys_action == "retire" and not args.force and objects_use(settings, args.key_id):
        return 1
    local = not (args.keys_action == "reencrypt" and buckets and not ours)
    code = run_keys(args) if local else 0
    if code == 0 and buckets:
        code = rotate_objects_in_storage(settings, _ring(args), reencrypt=_reencrypting(args))
    return code


def _reencrypting(args: argparse.Namespace) -> bool:
    return args.keys_action == "reencrypt" or getattr(args, "reencrypt", None) is not None


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
            reencrypt = args.reencrypt is not None
            paths = args.reencrypt if reencrypt else args.rewrap
            verb = "re-encrypting" if reencrypt else "re-wrapping"
            with _progress_bar(verb) as progress:
                report = rotate(
                    keyring=ring, artifacts=paths, reencrypt=reencrypt, progress=progress
                )
            print(f"active key {report.key.id}; {old.id} is now decrypt-only", file=stream)
            if reencrypt:
                return print_reencrypted(report, paths=paths, old_id=old.id, out=stream)
            if args.rewrap:
                print(f"re-wrapped {len(report.rewrapped)} artifact(s)", file=stream)
        elif action == "rewrap":
            with _progress_bar("re-wrapping") as progress:
                report = rewrap_all(args.paths, keyring=ring, progress=progress)
            print(
                f"re-wrapped {len(report.rewrapped)} artifact(s) under {report.key.id}; "
                f"{len(report.unchanged)} already were",
                file=stream,
            )
        elif action == "reencrypt":
            if not args.paths:
                raise ConfigError("name the artifact files or directories to re-encrypt")
            with _progress_bar("re-encrypting") as progress:
                report = reencrypt_all(args.paths, keyring=ring, progress=progress)
            return print_reencrypted(report, paths=args.paths, old_id=None, out=stream)
        elif action == "list":
            print_list(ring, as_json=args.json, out=stream)
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


@contextlib.contextmanager
def _progress_bar(desc: str) -> Iterator[Progress]:
    """A progress callback that opens a bar (stderr) once the total is known."""
    from inhouse.console import progress

    bar: Any = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = progress(total=total, desc=desc, unit="artifact")
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m inhouse.cli.keys_cmd keys …``."""
    parser = argparse.ArgumentParser(prog="inhouse")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run_keys(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
