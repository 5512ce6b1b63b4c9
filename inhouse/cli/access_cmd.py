"""``inhouse principals|tokens|audit|access``: access control and audit from the command line.

``inhouse access apply FILE`` syncs the database to a YAML policy (GitOps, see
:mod:`inhouse.access.policy`) and ``inhouse access export`` prints the current one.

:func:`add_parser` registers the four groups; :func:`run_access` dispatches a parsed command
to its handler in :mod:`inhouse.cli.access_handlers` with an
:class:`~inhouse.access.service.AccessService`.

Trust boundary: these commands talk to the metadata database and read the token pepper
directly, so they run as the owner of the state directory and no API token is asked for;
whoever can read that directory already holds every secret the server has. Each change is
still audited, with ``actor`` = ``local:<OS user name>(uid=<uid>)`` (the operator at the
keyboard, named from the password database, not from ``$LOGNAME``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from inhouse.access.audit import MAX_TAIL
from inhouse.access.permissions import ROLES
from inhouse.cli import access_handlers as act
from inhouse.errors import ConfigError, InhouseError

if TYPE_CHECKING:
    from inhouse.access.service import AccessService
    from inhouse.config import Settings

GROUPS = ("principals", "tokens", "audit", "access")
DEFAULT_EXPIRES_DAYS = 90
_RESOURCE_HELP = "resource pattern: a name such as 'digits', with '*' wildcards ('digits-*', '*')"
Handler = Callable[[argparse.Namespace, "AccessService", TextIO], int]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``principals``, ``tokens``, ``audit`` and ``access`` on a sub-parser set."""
    """Register ``principals``, ``tokens``, ``audit`` and ``access`` on a sub-parser set."""
    principals = _group(subparsers, "principals", "users and service accounts, roles and grants")
    acts = principals.add_subparsers(dest="access_action", required=True, metavar="ACTION")
    create = _cmd(acts, "create", "create a principal, optionally with built-in roles")
    create.add_argument("name", help="principal name: 1-128 characters from [A-Za-z0-9_.-]")
    create.add_argument(
        "--kind",
        choices=sorted(("user", "service")),
        default="user",
        help="'user' for a person, 'service' for a program (default: user)",
    )
    create.add_argument(
        "--role",
        action="append",
        default=[],
        dest="roles",
        metavar="ROLE[:RESOURCE]",
        help=f"give a built-in role ({', '.join(ROLES)}) on a resource pattern "
        "(default '*': every resource); repeat for several, e.g. --role predictor:digits",
    )
    lst = _cmd(acts, "list", "list principals with their kind, state, roles and grants")
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    for verb, text in (
        ("grant", "grant a permission to"),
        ("revoke", "remove a direct grant from"),
    ):
        cmd = _cmd(
            acts,
            verb,
            f"{text} a principal: 'model:predict:fraud-*', or 'model:predict fraud-*'",
        )
        cmd.add_argument("name", help="principal name")
        cmd.add_argument(
            "perm_action",
            metavar="PERMISSION",
            help=f"ACTION[:RESOURCE]; ACTION is one of {act.ACTION_LIST}, or '<domain>:*' or '*'",
        )
        cmd.add_argument(
            "resource",
            nargs="?",
            help=_RESOURCE_HELP + "; the older form, instead of ':RESOURCE' (default '*')",
        )
    disable = _cmd(
        acts,
        "disable",
        "disable a principal: its tokens stop working within 1 s (serving replicas cache "
        "token checks for up to 1 s)",
    )
    disable.add_argument("name", help="principal name")
    _cmd(acts, "roles", "list the built-in roles and the actions each includes")

    tokens = _group(subparsers, "tokens", "API tokens that clients send as 'Bearer <token>'")
    acts = tokens.add_subparsers(dest="access_action", required=True, metavar="ACTION")
    create = _cmd(acts, "create", "issue a token; it is shown (or saved) once and never again")
    create.add_argument("--principal", required=True, help="principal the token acts as")
    create.add_argument(
        "--expires-days",
        type=_days,
        default=DEFAULT_EXPIRES_DAYS,
        metavar="N",
        help=f"lifetime in days (default {DEFAULT_EXPIRES_DAYS}; the server caps it)",
    )
    create.add_argument(
        "--description", default="", help="free text saying what the token is for (not secret)"
    )
    create.add_argument(
        "--save",
        metavar="PATH",
        help="write the token to PATH (atomically, mode 0600) instead of printing it",
    )
    lst = _cmd(acts, "list", "list tokens (ids, owners, dates, status; never secrets)")
    lst.add_argument("--principal", help="only the tokens of this principal")
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    revoke = _cmd(
        acts, "revoke", "revoke a token; serving replicas refuse it within 1 s (idempotent)"
    )
    revoke.add_argument("token_id", help="the token id shown by 'tokens list' (16 hex digits)")

    audit = _group(subparsers, "audit", "the hash-chained audit log")
    acts = audit.add_subparsers(dest="access_action", required=True, metavar="ACTION")
    tail = _cmd(acts, "tail", "show the most recent audit entries, oldest first")
    tail.add_argument(
        "-n", type=int, default=20, metavar="N", help=f"how many entries (1-{MAX_TAIL}; default 20)"
    )
    tail.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _cmd(acts, "verify", "check the whole hash chain; exit 1 naming the first broken entry")

    access = _group(subparsers, "access", "the access policy as a YAML file (GitOps)")
    acts = access.add_subparsers(dest="access_action", required=True, metavar="ACTION")
    apply = _cmd(
        acts,
        "apply",
        "make principals, roles and grants match a policy file, in one audited transaction",
    )
    apply.add_argument("policy_file", metavar="FILE", help="YAML policy ('access export' format)")
    apply.add_argument(
        "--prune",
        action="store_true",
        help="also disable principals the file does not list (never deletes, tokens untouched)",
    )
    apply.add_argument(
        "--dry-run", action="store_true", help="print the changes without making them"
    )
    _cmd(acts, "export", "print the current access policy as YAML (no tokens)")


def _group(subparsers: Any, name: str, text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=text, description=text)
    parser.set_defaults(access_group=name, handler=cmd_access)
    return parser


def _cmd(subparsers: Any, name: str, text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=text, description=text)
    return parser


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of days") from None
    if not 1 <= days <= 36_500:
        raise argparse.ArgumentTypeError(f"{days} days: use a positive number of days")
    return days


def cmd_access(settings: Settings, args: argparse.Namespace) -> int:
    """The handler ``inhouse`` calls: :func:`run_access` on the settings' access service."""
    from inhouse import services

    return run_access(args, service=services.access(settings))


def run_access(
    args: argparse.Namespace, *, service: AccessService, out: TextIO | None = None
) -> int:
    """Run a parsed access command; errors print one line to stderr and return 1."""
    stream = out or sys.stdout
    try:
        handler = HANDLERS.get((args.access_group, args.access_action))
        if handler is None:  # pragma: no cover - argparse restricts the choices
            raise ConfigError(f"unknown command {args.access_group} {args.access_action}")
        return handler(args, service, stream)
    except InhouseError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


HANDLERS: dict[tuple[str, str], Handler] = {
    ("principals", "create"): act.principals_create,
    ("principals", "list"): act.principals_list,
    ("principals", "grant"): act.principals_grant,
    ("principals", "revoke"): act.principals_revoke,
    ("principals", "disable"): act.principals_disable,
    ("principals", "roles"): act.principals_roles,
    ("tokens", "create"): act.tokens_create,
    ("tokens", "list"): act.tokens_list,
    ("tokens", "revoke"): act.tokens_revoke,
    ("audit", "tail"): act.audit_tail,
    ("audit", "verify"): act.audit_verify,
    ("access", "apply"): act.access_apply,
    ("access", "export"): act.access_export,
}
