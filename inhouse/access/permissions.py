"""Actions, built-in roles, resource patterns and the pure :func:`authorize` decision.

A permission is an action (``model:predict``) on a resource pattern (``digits``, ``digits-*``
or ``*``), written ``action[:pattern]`` (``model:predict:fraud-*``, ``keys:admin``; see
:func:`parse_permission`). Roles bundle actions; a principal holds roles, each bound to a
resource pattern (``role[:pattern]``, e.g. ``service:fraud-*``), and direct grants. Nothing
here touches the database, so every decision is unit-testable.

Resource names are validated strictly (``^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$``): no slashes,
no leading dot, so a name taken from a URL can never traverse a path. Patterns may add ``*``
(any run of name characters); ``?`` and ``[...]`` are refused on purpose, and matching is done
by our own translation, not :mod:`fnmatch`, so it is case-sensitive on every platform.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from inhouse.errors import InvalidInputError, PermissionDeniedError

WILDCARD = "*"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_PATTERN_RE = re.compile(r"^[A-Za-z0-9*][A-Za-z0-9_.*-]{0,127}$")

ACTIONS: frozenset[str] = frozenset(
    {
        "model:predict",  # inference, model metadata
        "model:explain",  # attributions from the explainer sidecar
        "model:generate",  # text from a generative model (the OpenAI routes)
        "model:deploy",  # promote, roll back, undeploy
        "data:read",
        "data:write",
        "data:admin",  # register a table in place: it reads any table the database role sees
        "train:submit",
        "privacy:admin",  # budgets and the privacy ledger
        "keys:admin",  # artifact encryption keys
        "audit:read",  # audit tail / verify
        "access:admin",  # principals, grants, tokens
        "code:admin",  # register model builders: user code every worker and replica runs
    }
)
_DOMAINS = frozenset(a.split(":", 1)[0] for a in ACTIONS)

ROLES: dict[str, frozenset[str]] = {
    "admin": frozenset({WILDCARD}),
    "ml-engineer": frozenset({"model:*", "train:submit", "data:read", "data:write", "audit:read"}),
    "analyst": frozenset({"model:predict", "model:explain", "model:generate", "data:read"}),
    "service": frozenset({"model:predict"}),
    "operator": frozenset({"model:*", "train:submit", "data:read", "audit:read"}),
    "predictor": frozenset({"model:predict", "model:explain", "model:generate"}),
    "trainer": frozenset({"train:submit", "data:read", "data:write"}),
    "auditor": frozenset({"audit:read"}),
}
ROLE_DESCRIPTIONS: dict[str, str] = {
    "admin": "everything, including principals, tokens and keys",
    "ml-engineer": "train, deploy and query models; read and write data; read the audit log",
    "analyst": "query and explain models, generate text, read data",
    "service": "a program that only calls predict",
    "operator": "deploy and query models, submit training, read data and the audit log",
    "predictor": "query and explain models, generate text",
    "trainer": "submit training, read and write data",
    "auditor": "read the audit log",
}


def validate_name(name: str, *, what: str = "resource name") -> str:
    """Return ``name`` if it is a safe resource or principal name.

    Raises:
        InvalidInputError: the name is empty, too long or has characters outside
            ``[A-Za-z0-9_.-]`` (or starts with ``.``, ``_`` or ``-``).
    """
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidInputError(
            f"invalid {what} {_shown(name)}: use 1-128 characters from [A-Za-z0-9_.-], "
            "starting with a letter or digit"
        )
    return name


def validate_resource(resource: str) -> str:
    """Validate a requested resource: a concrete name, or ``*`` meaning every resource."""
    if resource == WILDCARD:
        return resource
    return validate_name(resource)


def validate_pattern(pattern: str) -> str:
    """Validate a granted resource pattern: a name in which ``*`` may stand for any run."""
    if not isinstance(pattern, str) or not _PATTERN_RE.fullmatch(pattern):
        raise InvalidInputError(
            f"invalid resource pattern {_shown(pattern)}: use a resource name, "
            "optionally with '*' wildcards (e.g. 'digits', 'digits-*', '*')"
        )
    return pattern


def validate_action(action: str, *, allow_wildcard: bool = False) -> str:
    """Return ``action`` if it is known (or, in grants, ``*`` / ``domain:*``)."""
    if action in ACTIONS:
        return action
    if allow_wildcard and isinstance(action, str):
        if action == WILDCARD:
            return action
        domain, _, rest = action.partition(":")
        if rest == WILDCARD and domain in _DOMAINS:
            return action
    raise InvalidInputError(
        f"unknown action {_shown(action)}: use one of {', '.join(sorted(ACTIONS))}"
    )


def validate_role(role: str) -> str:
    """Return ``role`` if it is a built-in role."""
    if role not in ROLES:
        raise InvalidInputError(f"unknown role {_shown(role)}: use one of {', '.join(ROLES)}")
    return role


def parse_permission(text: str) -> tuple[str, str]:
    """Split ``action[:resource-pattern]`` into ``(action, pattern)``; pattern default ``*``.

    ``model:predict:fraud-*`` -> ``("model:predict", "fraud-*")``, ``keys:admin`` ->
    ``("keys:admin", "*")``; the action may be ``domain:*`` or ``*`` (``*:digits``).

    Raises:
        InvalidInputError: unknown action or invalid pattern (one line, naming ``text``).
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"invalid permission {_shown(text)}: expected a string")
    if text == WILDCARD or text.startswith(WILDCARD + ":"):
        action, has_pattern, pattern = text.partition(":")
    else:
        domain, colon, rest = text.partition(":")
        verb, has_pattern, pattern = rest.partition(":")
        action = f"{domain}:{verb}" if colon else domain
    try:
        validate_action(action, allow_wildcard=True)
        return action, validate_pattern(pattern) if has_pattern else WILDCARD
    except InvalidInputError as exc:
        raise InvalidInputError(
            f"invalid permission {_shown(text)} (write 'action[:resource-pattern]', "
            f"e.g. 'model:predict:fraud-*'): {exc.message}"
        ) from None


def format_permission(action: str, resource: str = WILDCARD) -> str:
    """The ``action[:pattern]`` text of a grant (``:*`` left out), the inverse of parsing."""
    return action if resource == WILDCARD else f"{action}:{resource}"


def parse_role_binding(text: str) -> tuple[str, str]:
    """Split ``role[:resource-pattern]`` (``service:fraud-*``) into ``(role, pattern)``.

    Raises:
        InvalidInputError: unknown role or invalid pattern.
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"invalid role {_shown(text)}: expected a string")
    role, has_pattern, pattern = text.partition(":")
    return validate_role(role), validate_pattern(pattern) if has_pattern else WILDCARD


def format_role_binding(role: str, resource: str = WILDCARD) -> str:
    """The ``role[:pattern]`` text of a role binding (``:*`` left out)."""
    return role if resource == WILDCARD else f"{role}:{resource}"


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    parts = (re.escape(p) for p in pattern.split(WILDCARD))
    return re.compile("^" + "[A-Za-z0-9_.-]*".join(parts) + "$")


def match_resource(pattern: str, resource: str) -> bool:
    """Whether a granted ``pattern`` covers the requested ``resource``.

    A request for ``*`` (every resource, used by global actions) is covered only by the
    pattern ``*`` itself.
    """
    if resource == WILDCARD:
        return pattern == WILDCARD
    return _compile(pattern).fullmatch(resource) is not None


def match_action(granted: str, action: str) -> bool:
    """Whether a granted action (``*``, ``model:*`` or exact) covers ``action``."""
    if granted in (WILDCARD, action):
        return True
    domain, _, rest = granted.partition(":")
    return rest == WILDCARD and action.startswith(domain + ":")


@dataclass(frozen=True)
class Grant:
    """One permission: ``action`` (maybe ``*`` or ``domain:*``) on a resource ``pattern``."""

    action: str
    resource: str = WILDCARD

    def covers(self, action: str, resource: str) -> bool:
        """Whether this grant allows ``action`` on ``resource``."""
        return match_action(self.action, action) and match_resource(self.resource, resource)


@dataclass(frozen=True)
class RoleBinding:
    """A built-in role held on a resource pattern (``predictor`` on ``digits``)."""

    role: str
    resource: str = WILDCARD


@dataclass(frozen=True)
class Principal:
    """An authenticated identity with its roles and direct grants.

    Attributes:
        name: unique principal name.
        roles: role bindings; each expands to its role's actions on the binding's pattern.
        grants: direct grants.
        token_id: the id of the token used to authenticate, when there was one.
    """

    name: str
    roles: frozenset[RoleBinding] = field(default_factory=frozenset)
    grants: frozenset[Grant] = field(default_factory=frozenset)
    token_id: str | None = None

    def permissions(self) -> frozenset[Grant]:
        """Direct grants plus the expansion of every role binding."""
        return self.grants | expand_roles(self.roles)


def expand_roles(bindings: Iterable[RoleBinding]) -> frozenset[Grant]:
    """Expand role bindings into grants on each binding's resource pattern."""
    return frozenset(
        Grant(action, b.resource) for b in bindings for action in ROLES[validate_role(b.role)]
    )


def is_allowed(principal: Principal, action: str, resource: str) -> bool:
    """Whether ``principal`` may perform ``action`` on ``resource`` (validates both)."""
    validate_action(action)
    validate_resource(resource)
    return any(g.covers(action, resource) for g in principal.permissions())


def authorize(principal: Principal, action: str, resource: str) -> None:
    """Allow or refuse ``action`` on ``resource`` for ``principal``.

    Raises:
        InvalidInputError: the action is unknown or the resource name is invalid.
        PermissionDeniedError: no grant or role of the principal covers the request.
    """
    if not is_allowed(principal, action, resource):
        raise PermissionDeniedError(
            f"principal {principal.name!r} lacks {action!r} on {resource!r}; "
            "ask an admin to grant it or a role that includes it"
        )


def _shown(value: object) -> str:
    """A bounded repr for error messages, so hostile input cannot flood logs."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
