"""Pure permission logic: name validation, resource and action matching, roles, authorize."""

from __future__ import annotations

import pytest

from inhouse.access.permissions import (
    ACTIONS,
    ROLES,
    Grant,
    Principal,
    RoleBinding,
    authorize,
    expand_roles,
    format_permission,
    format_role_binding,
    is_allowed,
    match_action,
    match_resource,
    parse_permission,
    parse_role_binding,
    validate_action,
    validate_name,
    validate_pattern,
)
from inhouse.errors import InvalidInputError, PermissionDeniedError


@pytest.mark.parametrize("name", ["digits", "a", "Model_v2.1-final", "0abc", "x" * 128])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "../etc", "a/b", ".hidden", "-x", "_x", "a b", "x" * 129, "dïgits", "x\n", "a\\b", "*"],
)
def test_invalid_names_refused(name: str) -> None:
    with pytest.raises(InvalidInputError):
        validate_name(name)


@pytest.mark.parametrize("pattern", ["?", "dig[i]ts", "a/*", "../*", "", "**/x"])
def test_invalid_patterns_refused(pattern: str) -> None:
    with pytest.raises(InvalidInputError):
        validate_pattern(pattern)


@pytest.mark.parametrize(
    ("pattern", "resource", "expected"),
    [
        ("digits", "digits", True),
        ("digits", "digits2", False),
        ("digits", "Digits", False),
        ("digits-*", "digits-v2", True),
        ("digits-*", "digits", False),
        ("*-prod", "cancer-prod", True),
        ("*", "anything.at_all-1", True),
        ("*", "*", True),
        ("digits", "*", False),
        ("d*", "*", False),
        ("dig.ts", "digits", False),  # '.' is literal, not a regex wildcard
    ],
)
def test_match_resource(pattern: str, resource: str, expected: bool) -> None:
    assert match_resource(pattern, resource) is expected


def test_match_action() -> None:
    assert match_action("*", "keys:admin")
    assert match_action("model:*", "model:deploy")
    assert not match_action("model:*", "data:read")
    assert match_action("data:read", "data:read")
    assert not match_action("data:read", "data:write")


def test_action_validation() -> None:
    assert validate_action("model:predict") == "model:predict"
    assert validate_action("model:*", allow_wildcard=True) == "model:*"
    assert validate_action("*", allow_wildcard=True) == "*"
    for bad in ["model:*", "*", "model:fly", ""]:
        with pytest.raises(InvalidInputError):
            validate_action(bad)
    with pytest.raises(InvalidInputError):
        validate_action("nuke:*", allow_wildcard=True)


def test_builtin_roles_only_use_known_actions() -> None:
    assert set(ROLES) == {
        "admin",
        "ml-engineer",
        "analyst",
        "service",
        "operator",
        "predictor",
        "trainer",
        "auditor",
    }
    for actions in ROLES.values():
        for action in actions:
            validate_action(action, allow_wildcard=True)
    assert ROLES["predictor"] == {"model:predict", "model:explain", "model:generate"}
    assert {"model:predict", "data:read", "keys:admin"} <= ACTIONS


def test_role_expansion_scoped_to_binding_resource() -> None:
    grants = expand_roles([RoleBinding("predictor", "digits")])
    assert grants == {
        Grant("model:predict", "digits"),
        Grant("model:explain", "digits"),
        Grant("model:generate", "digits"),
    }
    alice = Principal(name="alice", roles=frozenset({RoleBinding("predictor", "digits")}))
    assert is_allowed(alice, "model:predict", "digits")
    assert is_allowed(alice, "model:explain", "digits")
    assert not is_allowed(alice, "model:predict", "cancer")
    assert not is_allowed(alice, "model:deploy", "digits")
    assert not is_allowed(alice, "model:predict", "*")


def test_admin_and_operator() -> None:
    admin = Principal(name="root", roles=frozenset({RoleBinding("admin")}))
    for action in ACTIONS:
        assert is_allowed(admin, action, "*")
    ops = Principal(name="ops", roles=frozenset({RoleBinding("operator")}))
    assert is_allowed(ops, "model:deploy", "digits")
    assert not is_allowed(ops, "keys:admin", "*")
    assert not is_allowed(ops, "data:write", "digits")


def test_direct_grants_combine_with_roles() -> None:
    bob = Principal(
        name="bob",
        roles=frozenset({RoleBinding("auditor")}),
        grants=frozenset({Grant("data:read", "cancer-*"), Grant("train:submit", "*")}),
    )
    assert is_allowed(bob, "audit:read", "*")
    assert is_allowed(bob, "data:read", "cancer-2024")
    assert not is_allowed(bob, "data:read", "digits")
    assert is_allowed(bob, "train:submit", "*")


def test_authorize_raises_403_or_422() -> None:
    carol = Principal(name="carol", grants=frozenset({Grant("model:predict", "digits")}))
    authorize(carol, "model:predict", "digits")
    with pytest.raises(PermissionDeniedError) as denied:
        authorize(carol, "model:explain", "digits")
    assert denied.value.status_code == 403
    with pytest.raises(InvalidInputError):
        authorize(carol, "model:predict", "../digits")
    with pytest.raises(InvalidInputError):
        authorize(carol, "model:teleport", "digits")


def test_issue_roles() -> None:
    def principal(role: str) -> Principal:
        return Principal(name="p", roles=frozenset({RoleBinding(role)}))

    svc = principal("service")
    assert ROLES["service"] == {"model:predict"}
    assert is_allowed(svc, "model:predict", "fraud-v2")
    assert not is_allowed(svc, "model:explain", "fraud-v2")
    analyst = principal("analyst")
    for action in ("model:predict", "model:explain", "data:read"):
        assert is_allowed(analyst, action, "digits")
    for action in ("data:write", "model:deploy", "train:submit"):
        assert not is_allowed(analyst, action, "digits")
    eng = principal("ml-engineer")
    for action in ("model:deploy", "model:predict", "train:submit", "data:write", "audit:read"):
        assert is_allowed(eng, action, "digits")
    for action in ("keys:admin", "access:admin", "privacy:admin"):
        assert not is_allowed(eng, action, "*")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model:predict:fraud-*", ("model:predict", "fraud-*")),
        ("data:read:digits", ("data:read", "digits")),
        ("keys:admin", ("keys:admin", "*")),
        ("model:*", ("model:*", "*")),
        ("model:*:digits", ("model:*", "digits")),
        ("*", ("*", "*")),
        ("*:digits-*", ("*", "digits-*")),
        ("audit:read:*", ("audit:read", "*")),
    ],
)
def test_parse_permission(text: str, expected: tuple[str, str]) -> None:
    assert parse_permission(text) == expected
    # format is the inverse, leaving out the default ':*'
    assert parse_permission(format_permission(*expected)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "model",
        "model:fly",
        "model:predict:",
        "model:predict:../etc",
        "model:predict:a:b",
        "nuke:*",
        "*:",
        ":digits",
        "model:predict:dig?ts",
    ],
)
def test_parse_permission_refuses(text: str) -> None:
    with pytest.raises(InvalidInputError) as exc:
        parse_permission(text)
    assert "invalid permission" in exc.value.message and "\n" not in exc.value.message


def test_parse_role_binding() -> None:
    assert parse_role_binding("service:fraud-*") == ("service", "fraud-*")
    assert parse_role_binding("ml-engineer") == ("ml-engineer", "*")
    assert format_role_binding("analyst", "*") == "analyst"
    assert format_role_binding("analyst", "digits") == "analyst:digits"
    for bad in ("wizard", "service:", "service:a/b", "service:a:b", ""):
        with pytest.raises(InvalidInputError):
            parse_role_binding(bad)
