"""``inhouse principals|tokens|audit|access``: access control and audit from the command line.

``inhouse access apply FILE`` syncs the database to a YAML policy (GitOps, see
:mod:`inhouse.access.policy`) and ``inhouse access export`` prints the current one.

``inhouse/cli.py`` mounts the groups with :func:`add_access_commands` and, when
``args.access_group`` is set, dispatches to :func:`run_access` with an
:class:`~inhouse.access.service.AccessService` it builds from the settings.

Trust boundary: these commands talk to the metadata database and read the token pepper
directly, so they run as the owner of the state directory and no API token is asked for;
whoever can read that directory already holds every secret the server has. Each change is
still audited, with ``actor`` = ``local:<OS user name>(uid=<uid>)`` (the operator at the
keyboard, named from the password database, not from ``$LOGNAME``).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import sys
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TextIO

from sqlalchemy import select

from inhouse.access.audit import MAX_TAIL, AuditEntry
from inhouse.access.permissions import (
    ACTIONS,
    ROLE_DESCRIPTIONS,
    ROLES,
    parse_permission,
    parse_role_binding,
    validate_pattern,
)
from inhouse.access.policy import apply_policy, diff_policy, dump_policy, export_policy, load_policy
from inhouse.access.records import GrantRecord, PrincipalRecord, RoleBindingRecord, utcnow
from inhouse.access.service import AccessService
from inhouse.access.tokens import TokenInfo
from inhouse.atomic import atomic_write_bytes
from inhouse.console import print_table
from inhouse.db import session_scope
from inhouse.errors import ConfigError, InhouseError, InvalidInputError, StorageError

GROUPS = ("principals", "tokens", "audit", "access")
DEFAULT_EXPIRES_DAYS = 90
_ACTION_LIST = ", ".join(sorted(ACTIONS))
_RESOURCE_HELP = "resource pattern: a name such as 'digits', with '*' wildcards ('digits-*', '*')"


def add_access_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
            help=f"ACTION[:RESOURCE]; ACTION is one of {_ACTION_LIST}, or '<domain>:*' or '*'",
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
    parser.set_defaults(access_group=name)
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


def local_actor() -> str:
    """``local:<OS user>(uid=<uid>)``: who the audit log names for a command run here.

    The name comes from the password database for the real uid, not from ``$LOGNAME`` or
    ``$USER`` (which ``getpass.getuser`` trusts and anyone can set), and the uid is recorded
    beside it.
    """
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:  # no passwd entry (containers)
        user = f"uid{uid}"
    return f"local:{user}(uid={uid})"


def run_access(
    args: argparse.Namespace, *, service: AccessService, out: TextIO | None = None
) -> int:
    """Run a parsed access command; errors print one line to stderr and return 1."""
    stream = out or sys.stdout
    try:
        handler = _HANDLERS.get((args.access_group, args.access_action))
        if handler is None:  # pragma: no cover - argparse restricts the choices
            raise ConfigError(f"unknown command {args.access_group} {args.access_action}")
        return handler(args, service, stream)
    except InhouseError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


# --- principals ------------------------------------------------------------------------------


def _principals_create(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
    bindings = sorted({parse_role_binding(spec) for spec in args.roles})
    everywhere = [role for role, resource in bindings if resource == "*"]
    scoped = [(role, resource) for role, resource in bindings if resource != "*"]
    actor = local_actor()
    service.create_principal(name=args.name, kind=args.kind, roles=everywhere, actor=actor)
    for role, resource in scoped:
        service.assign_role(principal=args.name, role=role, resource=resource, actor=actor)
    roles = ", ".join(f"{role} on {resource}" for role, resource in bindings) or "none"
    print(f"created {args.kind} {args.name} (roles: {roles})", file=out)
    return 0


def _principals_list(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
    roles: dict[str, list[str]] = defaultdict(list)
    grants: dict[str, list[str]] = defaultdict(list)
    # AccessAdmin has no listing method yet; read the tables in one transaction.
    with session_scope(service._engine) as session:
        principals = list(session.scalars(select(PrincipalRecord).order_by(PrincipalRecord.name)))
        for rb in session.scalars(select(RoleBindingRecord).order_by(RoleBindingRecord.role)):
            roles[rb.principal].append(f"{rb.role} on {rb.resource}")
        for g in session.scalars(select(GrantRecord).order_by(GrantRecord.action)):
            grants[g.principal].append(f"{g.action} on {g.resource}")
    if args.json:
        rows = [
            {
                "name": p.name,
                "kind": p.kind,
                "disabled": p.disabled,
                "created_at": p.created_at.isoformat(),
                "roles": roles[p.name],
                "grants": grants[p.name],
            }
            for p in principals
        ]
        print(json.dumps(rows, indent=2), file=out)
        return 0
    _table(
        ("NAME", "KIND", "STATE", "CREATED (UTC)", "ROLES", "GRANTS"),
        [
            (
                p.name,
                p.kind,
                "disabled" if p.disabled else "active",
                _time(p.created_at),
                ", ".join(roles[p.name]) or "-",
                ", ".join(grants[p.name]) or "-",
            )
            for p in principals
        ],
        out,
    )
    return 0


def _permission(args: argparse.Namespace) -> tuple[str, str]:
    """``ACTION[:RESOURCE]`` or the older ``ACTION RESOURCE`` → (action, pattern)."""
    action, resource = parse_permission(args.perm_action)
    if args.resource is None:
        return action, resource
    if args.perm_action != action:
        raise InvalidInputError(
            f"permission {args.perm_action!r} already names a resource pattern: "
            f"drop the extra argument {args.resource!r}"
        )
    return action, validate_pattern(args.resource)


def _principals_grant(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
    action, resource = _permission(args)
    service.grant(principal=args.name, action=action, resource=resource, actor=local_actor())
    print(f"granted {action} on {resource} to {args.name}", file=out)
    return 0


def _principals_revoke(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
    action, resource = _permission(args)
    service.revoke_grant(principal=args.name, action=action, resource=resource, actor=local_actor())
    print(f"revoked {action} on {resource} from {args.name}", file=out)
    return 0


def _principals_disable(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
    service.disable_principal(name=args.name, actor=local_actor())
    print(f"disabled {args.name}; its tokens no longer authenticate", file=out)
    return 0


def _principals_roles(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
    _table(
        ("ROLE", "ACTIONS", "FOR"),
        [(r, ", ".join(sorted(a)), ROLE_DESCRIPTIONS.get(r, "")) for r, a in ROLES.items()],
        out,
    )
    print(f"\nactions: {_ACTION_LIST}", file=out)
    return 0


# --- tokens ----------------------------------------------------------------------------------


def _tokens_create(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
    actor = local_actor()
    issued = service.issue_token(
        principal=args.principal,
        expires_in=timedelta(days=args.expires_days),
        description=args.description,
        actor=actor,
    )
    expires = _time(issued.expires_at)
    if args.save:
        try:
            atomic_write_bytes(args.save, issued.token.encode("ascii"), mode=0o600)
        except (OSError, StorageError) as exc:
            # The plaintext would be lost: do not leave a live token nobody holds.
            service.revoke_token(token_id=issued.token_id, actor=actor)
            reason = exc.message if isinstance(exc, StorageError) else exc.strerror or str(exc)
            raise StorageError(
                f"cannot save token to {args.save}: {reason}; token {issued.token_id} revoked"
            ) from exc
        print(f"token {issued.token_id} for {issued.principal} saved to {args.save}", file=out)
        print(f"expires {expires} UTC", file=out)
        return 0
    print(f"token {issued.token_id} for {issued.principal}, expires {expires} UTC", file=out)
    print("store it now: it is shown only this once (the last line is the token)", file=out)
    print(issued.token, file=out)
    return 0


def _tokens_list(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
    infos = service.list_tokens(principal=args.principal)
    now = utcnow()
    if args.json:
        print(json.dumps([_token_dict(t, now) for t in infos], indent=2), file=out)
        return 0
    _table(
        ("ID", "PRINCIPAL", "CREATED (UTC)", "EXPIRES (UTC)", "STATUS", "LAST USED", "DESCRIPTION"),
        [
            (
                t.token_id,
                t.principal,
                _time(t.created_at),
                _time(t.expires_at),
                t.status(now),
                _time(t.last_used_at) if t.last_used_at else "never",
                t.description or "-",
            )
            for t in infos
        ],
        out,
    )
    return 0


def _token_dict(t: TokenInfo, now: datetime) -> dict[str, Any]:
    def iso(ts: datetime | None) -> str | None:
        return ts.isoformat() if ts else None

    return {
        "id": t.token_id,
        "principal": t.principal,
        "description": t.description,
        "created_at": iso(t.created_at),
        "expires_at": iso(t.expires_at),
        "revoked_at": iso(t.revoked_at),
        "last_used_at": iso(t.last_used_at),
        "status": t.status(now),
    }


def _tokens_revoke(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
    service.revoke_token(token_id=args.token_id, actor=local_actor())
    print(f"revoked token {args.token_id}", file=out)
    return 0


# --- audit -----------------------------------------------------------------------------------


def _audit_tail(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
    entries = service.audit.tail(args.n)
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2), file=out)
        return 0
    _table(
        ("ID", "TIME (UTC)", "PRINCIPAL", "ACTION", "RESOURCE", "OUTCOME", "REQUEST", "DETAIL"),
        [_entry_row(e) for e in entries],
        out,
    )
    return 0


def _entry_row(e: AuditEntry) -> tuple[object, ...]:
    request, detail = e.request_id or "-", e.detail or "-"
    return (e.id, _time(e.ts), e.principal, e.action, e.resource, e.outcome, request, detail)


def _audit_verify(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
    report = service.audit.verify()
    if report.ok:
        print(f"audit log intact: {report.checked} entries", file=out)
        print(f"chain head: {report.head_hash} (copy it elsewhere to anchor the log)", file=out)
        return 0
    where = f" at entry {report.broken_at}" if report.broken_at is not None else ""
    print(
        f"error: audit log broken{where}: {report.reason} "
        f"({report.checked} entries verified before it)",
        file=sys.stderr,
    )
    return 1


# --- access policy ---------------------------------------------------------------------------


def _access_apply(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
    policy = load_policy(args.policy_file)
    if args.dry_run:
        diff = diff_policy(service, policy, prune=args.prune)
    else:
        diff = apply_policy(service, policy, actor=local_actor(), prune=args.prune)
    for change in diff.changes:
        print(change.describe(), file=out)
    changes = f"{len(diff)} change" + ("" if len(diff) == 1 else "s")
    if diff.empty:
        print(f"no changes: the database matches {args.policy_file}", file=out)
    elif diff.applied:
        print(f"applied {changes} from {args.policy_file}", file=out)
    else:
        print(f"dry run: {changes} would be applied; nothing was written", file=out)
    return 0


def _access_export(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
    out.write(dump_policy(export_policy(service)))
    return 0


_HANDLERS = {
    ("principals", "create"): _principals_create,
    ("principals", "list"): _principals_list,
    ("principals", "grant"): _principals_grant,
    ("principals", "revoke"): _principals_revoke,
    ("principals", "disable"): _principals_disable,
    ("principals", "roles"): _principals_roles,
    ("tokens", "create"): _tokens_create,
    ("tokens", "list"): _tokens_list,
    ("tokens", "revoke"): _tokens_revoke,
    ("audit", "tail"): _audit_tail,
    ("audit", "verify"): _audit_verify,
    ("access", "apply"): _access_apply,
    ("access", "export"): _access_export,
}


# --- output ----------------------------------------------------------------------------------


def _time(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], out: TextIO) -> None:
    print_table(headers, rows, out=out)
