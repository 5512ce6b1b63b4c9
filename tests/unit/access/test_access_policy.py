"""The YAML access policy: validation, diff, one-transaction apply, prune, export."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from inhouse.access import AccessService
from inhouse.access.policy import Policy, dump_policy, load_policy, parse_policy
from inhouse.access.policy_sync import apply_policy, diff_policy, export_policy
from inhouse.errors import (
    AuthenticationError,
    ConfigError,
    PermissionDeniedError,
    UnavailableError,
)

ISSUE_EXAMPLE = """
principals:
  - name: fraud-service
    kind: service
    roles: ["service:fraud-*"]            # role[:resource-pattern]
    permissions: ["model:explain:fraud-v2"] # direct grants
    disabled: false
  - name: alice
    roles: [ml-engineer, "analyst:digits"]
    permissions: ["keys:admin"]
"""


def _ops(policy_diff: Any) -> list[tuple[str, str, str]]:
    return [(c.op, c.principal, c.value) for c in policy_diff.changes]


def _header(service: AccessService, principal: str) -> str:
    return "Bearer " + service.issue_token(principal=principal, expires_in=timedelta(days=1)).token


def _allowed(service: AccessService, header: str, action: str, resource: str) -> bool:
    try:
        service.check(header, action=action, resource=resource, request_id=None)
    except PermissionDeniedError:
        return False
    return True


def test_load_apply_and_idempotence(service: AccessService, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(ISSUE_EXAMPLE)
    policy = load_policy(path)
    assert [p.name for p in policy.principals] == ["fraud-service", "alice"]
    alice = policy.principals[1]
    assert (
        alice.kind == "user"
        and not alice.disabled
        and alice.roles
        == [
            "ml-engineer",
            "analyst:digits",
        ]
    )

    planned = diff_policy(service, policy)
    assert not planned.applied and service.audit.tail(10) == []  # a dry run writes nothing
    applied = apply_policy(service, policy, actor="ci:gitops")
    assert applied.applied and _ops(applied) == _ops(planned)
    assert _ops(applied) == [
        ("create_principal", "alice", "user"),
        ("assign_role", "alice", "analyst:digits"),
        ("assign_role", "alice", "ml-engineer"),
        ("grant", "alice", "keys:admin"),
        ("create_principal", "fraud-service", "service"),
        ("assign_role", "fraud-service", "service:fraud-*"),
        ("grant", "fraud-service", "model:explain:fraud-v2"),
    ]
    entries = service.audit.tail(100)
    assert len(entries) == len(applied)
    assert {e.action for e in entries} == {"access:admin"}
    assert {e.principal for e in entries} == {"ci:gitops"}
    assert entries[0].resource == "alice" and entries[0].detail is not None
    assert entries[0].detail.startswith(f"policy {applied.digest[:16]}: create_principal")

    header = _header(service, "fraud-service")
    assert _allowed(service, header, "model:predict", "fraud-v1")
    assert not _allowed(service, header, "model:predict", "digits")
    assert _allowed(service, header, "model:explain", "fraud-v2")
    assert not _allowed(service, header, "model:explain", "fraud-v1")

    before = service.audit.tail(1)[0].id
    again = apply_policy(service, load_policy(path), actor="ci:gitops")
    assert again.empty and len(again) == 0 and again.digest == applied.digest
    assert service.audit.tail(1)[0].id == before  # a no-op apply writes nothing
    assert service.audit.verify().ok


def test_changes_take_effect_on_live_tokens(service: AccessService) -> None:
    apply_policy(service, parse_policy(ISSUE_EXAMPLE), actor="ci")
    header = _header(service, "fraud-service")
    changed = parse_policy(
        """
principals:
  - name: fraud-service
    kind: user
    roles: ["service:fraud-v3"]
    permissions: ["model:explain:fraud-*", "data:read"]
  - name: alice
    roles: [ml-engineer, "analyst:digits"]
    permissions: ["keys:admin"]
    disabled: true
"""
    )
    diff = apply_policy(service, changed, actor="ci")
    assert _ops(diff) == [
        ("disable_principal", "alice", "disabled in the policy"),
        ("set_kind", "fraud-service", "user"),
        ("unassign_role", "fraud-service", "service:fraud-*"),
        ("assign_role", "fraud-service", "service:fraud-v3"),
        ("revoke_grant", "fraud-service", "model:explain:fraud-v2"),
        ("grant", "fraud-service", "data:read"),
        ("grant", "fraud-service", "model:explain:fraud-*"),
    ]
    # The same token, no restart: the new state applies to the next request.
    assert not _allowed(service, header, "model:predict", "fraud-v1")
    assert _allowed(service, header, "model:predict", "fraud-v3")
    assert _allowed(service, header, "model:explain", "fraud-v1")
    assert _allowed(service, header, "data:read", "anything")
    assert apply_policy(service, changed, actor="ci").empty

    reenabled = parse_policy(ISSUE_EXAMPLE)
    ops = _ops(apply_policy(service, reenabled, actor="ci"))
    assert ("enable_principal", "alice", "") in ops


def test_prune_disables_unlisted_and_never_touches_tokens(service: AccessService) -> None:
    service.create_principal(name="legacy", roles=["predictor"])
    legacy = _header(service, "legacy")
    policy = parse_policy(ISSUE_EXAMPLE)
    diff = apply_policy(service, policy, actor="ci")
    assert "legacy" not in {c.principal for c in diff.changes}  # no prune: left alone
    assert service.get_principal(name="legacy").roles  # roles kept
    assert _allowed(service, legacy, "model:predict", "digits")

    assert _ops(diff_policy(service, policy, prune=True)) == [
        ("disable_principal", "legacy", "not in the policy; --prune")
    ]
    pruned = apply_policy(service, policy, actor="ci", prune=True)
    assert len(pruned) == 1
    with pytest.raises(AuthenticationError, match="disabled"):
        service.authenticate(legacy)
    assert all(t.revoked_at is None for t in service.list_tokens(principal="legacy"))
    assert apply_policy(service, policy, actor="ci", prune=True).empty


def test_apply_is_one_transaction(service: AccessService, monkeypatch: pytest.MonkeyPatch) -> None:
    real = service.audit.append_in
    calls = {"n": 0}

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 4:
            raise UnavailableError("audit store down")
        return real(*args, **kwargs)

    monkeypatch.setattr(service.audit, "append_in", failing)
    with pytest.raises(UnavailableError):
        apply_policy(service, parse_policy(ISSUE_EXAMPLE), actor="ci")
    monkeypatch.undo()
    assert export_policy(service).principals == []
    assert service.audit.tail(10) == []
    assert len(apply_policy(service, parse_policy(ISSUE_EXAMPLE), actor="ci")) == 7


def test_export_round_trips(service: AccessService) -> None:
    service.create_principal(name="ops", roles=["operator"])
    service.grant(principal="ops", action="*", resource="staging-*")
    service.disable_principal(name="ops")
    apply_policy(service, parse_policy(ISSUE_EXAMPLE), actor="ci")
    text = dump_policy(export_policy(service))
    assert text.startswith("#") and "service:fraud-*" in text
    back = parse_policy(text)
    assert [p.name for p in back.principals] == ["alice", "fraud-service", "ops"]
    ops = back.principals[2]
    assert ops.disabled and ops.roles == ["operator"] and ops.permissions == ["*:staging-*"]
    assert diff_policy(service, back, prune=True).empty


def test_canonical_forms_and_duplicates_are_one_entry(service: AccessService) -> None:
    policy = parse_policy(
        """
version: 1
principals:
  - name: bob
    roles: ["analyst:*", analyst]
    permissions: ["data:read:*", "data:read"]
"""
    )
    assert policy.principals[0].roles == ["analyst", "analyst"]
    assert _ops(apply_policy(service, policy, actor="ci")) == [
        ("create_principal", "bob", "user"),
        ("assign_role", "bob", "analyst"),
        ("grant", "bob", "data:read"),
    ]
    assert isinstance(policy, Policy) and len(policy.digest()) == 64


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a mapping with a 'principals' list, got NoneType"),
        ("- a\n- b\n", "got list"),
        ("principals: [\n", "not valid YAML at line 2"),
        ("{}", "policy, field 'principals': required field is missing"),
        ("principals: []\nowner: me\n", "field 'owner': unknown field (allowed: version, prin"),
        ("version: 2\nprincipals: []\n", "field 'version'"),
        (
            "principals:\n  - name: a\n  - name: b\n    roles: [wizard]\n",
            "principals[1] ('b'), field 'roles[0]': unknown role 'wizard'",
        ),
        (
            "principals:\n  - name: a\n    permissions: [model:fly]\n",
            "principals[0] ('a'), field 'permissions[0]': invalid permission 'model:fly'",
        ),
        (
            "principals:\n  - name: a\n    role: [admin]\n",
            "principals[0] ('a'), field 'role': unknown field (allowed: name, kind",
        ),
        ("principals:\n  - kind: user\n", "principals[0], field 'name': required field"),
        ("principals:\n  - name: ../etc\n", "field 'name': invalid principal name"),
        ("principals:\n  - name: a\n    kind: robot\n", "field 'kind'"),
        ("principals:\n  - name: a\n    disabled: 'no'\n", "field 'disabled'"),
        ("principals:\n  - name: a\n    roles: admin\n", "field 'roles'"),
        ("principals:\n  - name: a\n  - name: a\n", "'a' is listed twice"),
        (
            "principals:\n  - name: a\n    roles: [x, y]\n",
            "unknown role 'x'",  # the first error, and a count of the rest
        ),
    ],
)
def test_invalid_policies_are_one_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_policy(text, source="team.yaml")
    got = exc.value.message
    assert got.startswith("team.yaml: ") and message in got, got
    assert "\n" not in got


def test_several_errors_are_counted() -> None:
    with pytest.raises(ConfigError, match=r"\(and 1 more errors\)"):
        parse_policy("principals:\n  - name: a\n    roles: [x, y]\n")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read policy file"):
        load_policy(tmp_path / "missing.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_policy(binary)


def test_concurrent_applies_serialize(service: AccessService) -> None:
    policy = parse_policy(ISSUE_EXAMPLE)
    made: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            made.append(len(apply_policy(service, policy, actor="ci")))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sorted(made) == [0, 0, 7]
    assert service.audit.verify().checked == 7
