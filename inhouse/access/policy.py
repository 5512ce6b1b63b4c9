"""Access policy as a YAML file (GitOps): load it, diff it against the database, apply it.

A policy lists principals with their kind, role bindings (``role[:resource-pattern]``),
direct grants (``action[:resource-pattern]``) and state::

    version: 1                                 # optional
    principals:
      - name: fraud-service
        kind: service                          # user (default) or service
        roles: ["service:fraud-*"]             # role[:resource-pattern], pattern default '*'
        permissions: ["model:explain:fraud-v2"]  # direct grants, action[:resource-pattern]
        disabled: false                        # default false
      - name: alice
        roles: ["ml-engineer", "analyst:digits"]

``inhouse access apply policy.yaml`` makes every listed principal match its entry exactly:
missing principals are created, kind and disabled state set, role bindings and grants not
in the file removed and those in it added. Principals not in the file are left alone, or
disabled with ``--prune`` (never deleted). Tokens are never touched: revoke them with
``inhouse tokens revoke``. The whole apply is one transaction with one ``access:admin``
audit entry per change, so it lands completely or not at all, and a second apply of the
same file changes nothing. Every request reads the database, so a change takes effect
without a redeploy. ``inhouse access export`` prints the current state in this format.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from inhouse.access.admin import AccessAdmin
from inhouse.access.permissions import (
    format_permission,
    format_role_binding,
    parse_permission,
    parse_role_binding,
    validate_name,
)
from inhouse.access.records import GrantRecord, PrincipalRecord, RoleBindingRecord
from inhouse.db import session_scope
from inhouse.errors import ConfigError, ConflictError, InvalidInputError, UnavailableError

AUDIT_ACTION = "access:admin"
MAX_POLICY_BYTES = 8 * 1024 * 1024
_FIELDS = "name, kind, roles, permissions, disabled"


def _check(
    parse: Callable[[str], tuple[str, str]], fmt: Callable[[str, str], str]
) -> AfterValidator:
    def canonical(text: str) -> str:
        try:
            return fmt(*parse(text))
        except InvalidInputError as exc:
            raise ValueError(exc.message) from None

    return AfterValidator(canonical)


def _name(text: str) -> str:
    try:
        return validate_name(text, what="principal name")
    except InvalidInputError as exc:
        raise ValueError(exc.message) from None


RoleSpec = Annotated[str, _check(parse_role_binding, format_role_binding)]
PermissionSpec = Annotated[str, _check(parse_permission, format_permission)]


class PrincipalPolicy(BaseModel):
    """One principal as the policy wants it; specs are kept in canonical form (no ``:*``)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: Annotated[str, AfterValidator(_name)]
    kind: Literal["user", "service"] = "user"
    roles: list[RoleSpec] = Field(default_factory=list)
    permissions: list[PermissionSpec] = Field(default_factory=list)
    disabled: bool = False

    def bindings(self) -> frozenset[tuple[str, str]]:
        """``(role, pattern)`` pairs."""
        return frozenset(parse_role_binding(r) for r in self.roles)

    def grants(self) -> frozenset[tuple[str, str]]:
        """``(action, pattern)`` pairs."""
        return frozenset(parse_permission(p) for p in self.permissions)


class Policy(BaseModel):
    """The access policy: every principal it manages."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    version: Literal[1] = 1
    principals: list[PrincipalPolicy]

    @model_validator(mode="after")
    def _unique_names(self) -> Policy:
        seen: dict[str, int] = {}
        for i, entry in enumerate(self.principals):
            if entry.name in seen:
                raise ValueError(
                    f"principal {entry.name!r} is listed twice "
                    f"(principals[{seen[entry.name]}] and principals[{i}])"
                )
            seen[entry.name] = i
        return self

    def digest(self) -> str:
        """SHA-256 of the canonical content: names the applied policy in the audit log."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


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


# --- loading ---------------------------------------------------------------------------------


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file.

    Raises:
        ConfigError: unreadable file, invalid YAML, or an invalid entry; the one-line
            message names the file, the entry and the field.
    """
    target = Path(path)
    try:
        with target.open("rb") as handle:
            data = handle.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {target}: {exc.strerror or exc}") from None
    if len(data) > MAX_POLICY_BYTES:
        raise ConfigError(f"policy file {target} is over {MAX_POLICY_BYTES // 2**20} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"policy file {target} is not UTF-8 text") from None
    return parse_policy(text, source=str(target))


def parse_policy(text: str, *, source: str = "<policy>") -> Policy:
    """Validate a policy given as YAML text (``source`` names it in errors).

    Raises:
        ConfigError: as :func:`load_policy`.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping with a 'principals' list, got {type(data).__name__}"
        )
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_first_error(exc, data)}") from None


def _first_error(exc: ValidationError, data: dict[str, Any]) -> str:
    errors = exc.errors()
    first = errors[0]
    loc = list(first["loc"])
    if first["type"] == "extra_forbidden":
        allowed = _FIELDS if len(loc) > 2 else "version, principals"
        message = f"unknown field (allowed: {allowed})"
    elif first["type"] == "missing":
        message = "required field is missing"
    else:
        message = str(first["msg"]).removeprefix("Value error, ")
    where = "policy"
    if len(loc) >= 2 and loc[0] == "principals" and isinstance(loc[1], int):
        where = f"principals[{loc[1]}]"
        entry = data["principals"][loc[1]]
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str):
            where += f" ({name[:128]!r})"
        loc = loc[2:]
    if loc:
        field = str(loc[0]) + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
        where += f", field {field!r}"
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
    return f"{where}: {message}{more}".replace("\n", " ")


def dump_policy(policy: Policy) -> str:
    """The policy as YAML, in the format :func:`load_policy` reads."""
    body = yaml.safe_dump(policy.model_dump(), sort_keys=False, default_flow_style=False)
    return "# inhouse access policy: inhouse access apply FILE [--prune] [--dry-run]\n" + body


# --- state, diff and apply -------------------------------------------------------------------


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
        if change.op == "assign_role":
            session.add(RoleBindingRecord(principal=name, role=role, resource=res, created_at=now))
        else:
            session.execute(
                delete(RoleBindingRecord).where(
                    RoleBindingRecord.principal == name,
                    RoleBindingRecord.role == role,
                    RoleBindingRecord.resource == res,
                )
            )
    else:
        action, res = parse_permission(value)
        if change.op == "grant":
            session.add(GrantRecord(principal=name, action=action, resource=res, created_at=now))
        else:
            session.execute(
                delete(GrantRecord).where(
                    GrantRecord.principal == name,
                    GrantRecord.action == action,
                    GrantRecord.resource == res,
                )
            )
    session.flush()


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
