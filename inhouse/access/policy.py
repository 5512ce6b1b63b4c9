"""Access policy as a YAML file (GitOps): the policy model, and reading and writing the file.

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
Diffing and applying a policy against the database is :mod:`inhouse.access.policy_sync`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from inhouse.access.permissions import (
    format_permission,
    format_role_binding,
    parse_permission,
    parse_role_binding,
    validate_name,
)
from inhouse.errors import ConfigError, InvalidInputError

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
