"""The handlers of ``inhouse principals|tokens|audit|access``: ``(args, service, out) -> code``.

:mod:`inhouse.cli.access_cmd` parses the commands and dispatches here. Every change names the
operator at the keyboard (:func:`inhouse.cli.auth.local_actor`) in the audit log.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TextIO

from sqlalchemy import select

from inhouse.access.auditentry import AuditEntry
from inhouse.access.permissions import (
    ACTIONS,
    ROLE_DESCRIPTIONS,
    ROLES,
    parse_permission,
    parse_role_binding,
    validate_pattern,
)
from inhouse.access.policy import dump_policy, load_policy
from inhouse.access.policy_sync import apply_policy, diff_policy, export_policy
from inhouse.access.records import GrantRecord, PrincipalRecord, RoleBindingRecord
from inhouse.access.service import AccessService
from inhouse.access.tokens import TokenInfo
from inhouse.atomic import atomic_write_bytes
from inhouse.cli.auth import local_actor
from inhouse.console import print_table
from inhouse.db import session_scope, utcnow
from inhouse.errors import InvalidInputError, StorageError

ACTION_LIST = ", ".join(sorted(ACTIONS))


# --- principals ------------------------------------------------------------------------------


def principals_create(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
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


def principals_list(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
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


def principals_grant(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
    action, resource = _permission(args)
    service.grant(principal=args.name, action=action, resource=resource, actor=local_actor())
    print(f"granted {action} on {resource} to {args.name}", file=out)
    return 0


def principals_revoke(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
    action, resource = _permission(args)
    service.revoke_grant(principal=args.name, action=action, resource=resource, actor=local_actor())
    print(f"revoked {action} on {resource} from {args.name}", file=out)
    return 0


def principals_disable(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
    service.disable_principal(name=args.name, actor=local_actor())
    print(f"disabled {args.name}; its tokens no longer authenticate", file=out)
    return 0


def principals_roles(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
    _table(
        ("ROLE", "ACTIONS", "FOR"),
        [(r, ", ".join(sorted(a)), ROLE_DESCRIPTIONS.get(r, "")) for r, a in ROLES.items()],
        out,
    )
    print(f"\nactions: {ACTION_LIST}", file=out)
    return 0


# --- tokens ----------------------------------------------------------------------------------


def tokens_create(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
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


def tokens_list(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
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


def tokens_revoke(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
    service.revoke_token(token_id=args.token_id, actor=local_actor())
    print(f"revoked token {args.token_id}", file=out)
    return 0


# --- audit -----------------------------------------------------------------------------------


def audit_tail(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
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


def audit_verify(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
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


def access_apply(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
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


def access_export(args: argparse.Namespace, service: AccessService, out: TextIO) -> int:
    out.write(dump_policy(export_policy(service)))
    return 0


# --- output ----------------------------------------------------------------------------------


def _time(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], out: TextIO) -> None:
    print_table(headers, rows, out=out)
