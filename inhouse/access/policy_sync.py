"""Sync the database to an access policy: diff, apply in one audited transaction, export.

The policy and its file format are :mod:`inhouse.access.policy`. Applying makes every listed
principal match its entry exactly (kind, disabled state, role bindings, direct grants);
principals not listed are left alone, or disabled with ``prune`` (never deleted); tokens are
never touched. One ``access:admin`` audit entry per change, all in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from inhouse.access.admin import AccessAdmin
from inhouse.access.permissions import (
    format_permission,
    format_role_binding,
    parse_permission,
    parse_role_binding,
)
from inhouse.access.policy import Policy
from inhouse.access.records import GrantRecord, PrincipalRecord, RoleBindingRecord
from inhouse.db import session_scope
from inhouse.errors import ConflictError, UnavailableError

AUDIT_ACTION = "access:admin"


@dataclass(frozen=True)
class PolicyChange:
    """One change that applying the policy makes.

    ``op`` is one of ``create_principal`` (``value`` = kind), ``set_kind`` (new kind),
    ``enable_principal``, ``disable_principal`` (``value`` = the reason), ``assign_role``,
    ``unassign_role`` (``role[:pattern]``), ``grant``, ``revoke_grant`` (``action[:pattern]``).
    """

    op: str
    principal: str
    value: str = ""

    def describe(self) -> str:
        """One human-readable line."""
        text = {
            "create_principal": "+ principal {p} ({v})",
            "set_kind": "~ principal {p}: kind -> {v}",
            "enable_principal": "~ principal {p}: enable",
            "disable_principal": "~ principal {p}: disable ({v})",
            "assign_role": "+ role {v} -> {p}",
            "unassign_role": "- role {v} -> {p}",
            "grant": "+ permission {v} -> {p}",
            "revoke_grant": "- permission {v} -> {p}",
        }[self.op]
        return text.format(p=self.principal, v=self.value)


@dataclass(frozen=True)
class PolicyDiff:
    """What :func:`apply_policy` changed (or :func:`diff_policy` would change).

    Attributes:
        changes: in the order they are applied.
        applied: whether the changes were written (False for a dry run).
        digest: :meth:`Policy.digest` of the policy, as recorded in the audit log.
    """

    changes: tuple[PolicyChange, ...]
    applied: bool
    digest: str

    @property
    def empty(self) -> bool:
        """Whether the database already matches the policy."""
        return not self.changes

    def __len__(self) -> int:
        return len(self.changes)


@dataclass(frozen=True)
class _Current:
    kind: str
    disabled: bool
    bindings: frozenset[tuple[str, str]]
    grants: frozenset[tuple[str, str]]


def _read(session: Session) -> dict[str, _Current]:
    bindings: dict[str, set[tuple[str, str]]] = {}
    grants: dict[str, set[tuple[str, str]]] = {}
    for rb in session.scalars(select(RoleBindingRecord)):
        bindings.setdefault(rb.principal, set()).add((rb.role, rb.resource))
    for g in session.scalars(select(GrantRecord)):
        grants.setdefault(g.principal, set()).add((g.action, g.resource))
    return {
        p.name: _Current(
            p.kind,
            p.disabled,
            frozenset(bindings.get(p.name, ())),
            frozenset(grants.get(p.name, ())),
        )
        for p in session.scalars(select(PrincipalRecord))
    }


def _changes(current: dict[str, _Current], policy: Policy, prune: bool) -> list[PolicyChange]:
    out: list[PolicyChange] = []
    for want in sorted(policy.principals, key=lambda e: e.name):
        name, have = want.name, current.get(want.name)
        if have is None:
            out.append(PolicyChange("create_principal", name, want.kind))
            if want.disabled:
                out.append(PolicyChange("disable_principal", name, "disabled in the policy"))
            have = _Current(want.kind, want.disabled, frozenset(), frozenset())
        if have.kind != want.kind:
            out.append(PolicyChange("set_kind", name, want.kind))
        if have.disabled and not want.disabled:
            out.append(PolicyChange("enable_principal", name))
        if want.disabled and not have.disabled:
            out.append(PolicyChange("disable_principal", name, "disabled in the policy"))
        wanted_roles, wanted_grants = want.bindings(), want.grants()
        for role, res in sorted(have.bindings - wanted_roles):
            out.append(PolicyChange("unassign_role", name, format_role_binding(role, res)))
        for role, res in sorted(wanted_roles - have.bindings):
            out.append(PolicyChange("assign_role", name, format_role_binding(role, res)))
        for action, res in sorted(have.grants - wanted_grants):
            out.append(PolicyChange("revoke_grant", name, format_permission(action, res)))
        for action, res in sorted(wanted_grants - have.grants):
            out.append(PolicyChange("grant", name, format_permission(action, res)))
    if prune:
        listed = {e.name for e in policy.principals}
        for name in sorted(set(current) - listed):
            if not current[name].disabled:
                out.append(PolicyChange("disable_principal", name, "not in the policy; --prune"))
    return out


def _write(session: Session, change: PolicyChange, now: datetime) -> None:
    name, value = change.principal, change.value
    if change.op == "create_principal":
        session.add(PrincipalRecord(name=name, kind=value, disabled=False, created_at=now))
    elif change.op in ("set_kind", "enable_principal", "disable_principal"):
        values: dict[str, Any] = (
            {"kind": value}
            if change.op == "set_kind"
            else {"disabled": change.op == "disable_principal"}
        )
        session.execute(update(PrincipalRecord).where(PrincipalRecord.name == name).values(values))
    elif change.op in ("assign_role", "unassign_role"):
        role, res = parse_role_binding(value)
        add = change.op == "assign_role"
        _bind(session, RoleBindingRecord, name, res, add=add, now=now, role=role)
    else:
        action, res = parse_permission(value)
        _bind(session, GrantRecord, name, res, add=change.op == "grant", now=now, action=action)
    session.flush()


def _bind(
    session: Session,
    table: Any,
    principal: str,
    resource: str,
    *,
    add: bool,
    now: datetime,
    **what: str,
) -> None:
    """Add (or delete) the row of ``table`` (role bindings, grants) that gives ``principal``
    ``what`` (its role, or its action) on ``resource``."""
    if add:
        session.add(table(principal=principal, resource=resource, created_at=now, **what))
        return
    match = [getattr(table, column) == value for column, value in what.items()]
    session.execute(
        delete(table).where(table.principal == principal, table.resource == resource, *match)
    )


def diff_policy(service: AccessAdmin, policy: Policy, *, prune: bool = False) -> PolicyDiff:
    """The changes :func:`apply_policy` would make now (a dry run: nothing is written)."""
    with session_scope(service._engine) as session:
        changes = _changes(_read(session), policy, prune)
    return PolicyDiff(tuple(changes), applied=False, digest=policy.digest())


def apply_policy(
    service: AccessAdmin, policy: Policy, *, actor: str, prune: bool = False
) -> PolicyDiff:
    """Make the database match ``policy`` in one transaction, auditing each change.

    Args:
        service: the access service whose database is changed.
        policy: from :func:`load_policy` or :func:`parse_policy`.
        actor: who applies it, as the audit log names them (``local:alice(uid=1000)``,
            ``ci:deploy``).
        prune: also disable every principal the policy does not list.

    Returns:
        The changes made; empty when the database already matched.

    Raises:
        ConflictError: a concurrent change collided with this one (nothing was written).
        UnavailableError: the database or the audit log refused a write (nothing was written).
    """
    digest = policy.digest()
    try:
        with session_scope(service._engine) as session:
            # Take the audit chain lock first: every other access change and audit append
            # waits, so the state read below cannot go stale before commit.
            service.audit.lock_in(session)
            changes = _changes(_read(session), policy, prune)
            now = service._clock()
            for change in changes:
                _write(session, change, now)
                service.audit.append_in(
                    session,
                    principal=actor,
                    action=AUDIT_ACTION,
                    resource=change.principal,
                    outcome="allow",
                    detail=f"policy {digest[:16]}: {change.op} {change.value}".rstrip(),
                )
    except IntegrityError as exc:
        raise ConflictError(
            f"applying the access policy conflicts with a concurrent change; retry: {exc.orig}"
        ) from exc
    except (OperationalError, UnavailableError) as exc:
        raise UnavailableError(
            "cannot apply the access policy, the database refused: "
            f"{getattr(exc, 'orig', exc)}; retry"
        ) from exc
    return PolicyDiff(tuple(changes), applied=True, digest=digest)


def export_policy(service: AccessAdmin) -> Policy:
    """The current access state of every principal as a policy (tokens are not included)."""
    with session_scope(service._engine) as session:
        current = _read(session)
    return Policy.model_validate(
        {
            "principals": [
                {
                    "name": name,
                    "kind": state.kind,
                    "roles": [format_role_binding(*b) for b in sorted(state.bindings)],
                    "permissions": [format_permission(*g) for g in sorted(state.grants)],
                    "disabled": state.disabled,
                }
                for name, state in sorted(current.items())
            ]
        }
    )
