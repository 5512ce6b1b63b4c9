"""``inhouse principals|tokens|audit``: the access CLI against a temporary SQLite database."""

from __future__ import annotations

import argparse
import io
import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from inhouse.access import AccessService
from inhouse.cli.access_cmd import add_parser as add_access_commands
from inhouse.cli.access_cmd import run_access
from inhouse.cli.auth import local_actor
from inhouse.errors import AuthenticationError, PermissionDeniedError

Runner = Callable[..., tuple[int, str]]


@pytest.fixture
def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="inhouse")
    add_access_commands(root.add_subparsers(dest="command", required=True))
    return root


@pytest.fixture
def cli(parser: argparse.ArgumentParser, service: AccessService) -> Runner:
    """Run ``inhouse <argv>`` in-process; returns (exit code, stdout text)."""

    def run(*argv: str) -> tuple[int, str]:
        out = io.StringIO()
        code = run_access(parser.parse_args(argv), service=service, out=out)
        return code, out.getvalue()

    return run


def test_principal_token_revoke_and_audit_journey(
    cli: Runner,
    service: AccessService,
    engine: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = cli(
        "principals", "create", "app", "--kind", "service", "--role", "predictor:digits"
    )
    assert code == 0 and "predictor on digits" in out
    code, out = cli("principals", "list")
    assert code == 0 and "app" in out and "predictor on digits" in out and "service" in out

    path = tmp_path / "secrets" / "app.token"
    code, out = cli(
        "tokens", "create", "--principal", "app", "--description", "ci", "--save", str(path)
    )
    assert code == 0 and str(path) in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text()
    assert token not in out
    principal = service.authenticate("Bearer " + token)
    assert principal.name == "app" and principal.token_id is not None
    assert token.startswith(f"ih_{principal.token_id}_")
    assert principal.token_id in out
    service.check("Bearer " + token, action="model:predict", resource="digits", request_id=None)
    with pytest.raises(PermissionDeniedError):
        service.check("Bearer " + token, action="model:predict", resource="other", request_id=None)

    secret = token.removeprefix(f"ih_{principal.token_id}_")  # may itself hold "_"
    code, out = cli("tokens", "list")
    assert code == 0 and principal.token_id in out and "active" in out and "ci" in out
    assert secret not in out
    code, out = cli("tokens", "list", "--principal", "app", "--json")
    rows = json.loads(out)
    assert [r["id"] for r in rows] == [principal.token_id] and secret not in out

    code, out = cli("tokens", "revoke", principal.token_id)
    assert code == 0
    with pytest.raises(AuthenticationError):
        service.authenticate("Bearer " + token)
    assert "revoked" in cli("tokens", "list", "--principal", "app")[1]

    code, out = cli("audit", "tail", "-n", "50")
    assert code == 0
    for action in ("access:create_principal", "access:issue_token", "access:revoke_token"):
        assert action in out
    assert local_actor() in out and local_actor().startswith("local:")
    entries = json.loads(cli("audit", "tail", "--json")[1])
    [revoke] = [e for e in entries if e["action"] == "access:revoke_token"]
    assert revoke["principal"] == local_actor() and revoke["resource"] == principal.token_id
    assert entries[-1]["outcome"] == "deny"  # the refused authentication after the revoke

    code, out = cli("audit", "verify")
    assert code == 0 and f"audit log intact: {entries[-1]['id']} entries" in out

    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET outcome = 'deny' WHERE id = 2"))
    capsys.readouterr()
    code, out = cli("audit", "verify")
    err = capsys.readouterr().err
    assert code == 1 and "intact" not in out
    assert err.startswith("error: audit log broken at entry 2:") and "altered" in err


def test_printed_token_grant_revoke_disable(cli: Runner, service: AccessService) -> None:
    cli("principals", "create", "bob")
    code, out = cli("tokens", "create", "--principal", "bob", "--expires-days", "1")
    assert code == 0
    token = out.strip().splitlines()[-1]
    header = "Bearer " + token
    with pytest.raises(PermissionDeniedError):
        service.check(header, action="train:submit", resource="digits", request_id=None)
    assert cli("principals", "grant", "bob", "train:submit", "digits-*")[0] == 0
    service.check(header, action="train:submit", resource="digits-v2", request_id=None)
    assert cli("principals", "revoke", "bob", "train:submit", "digits-*")[0] == 0
    with pytest.raises(PermissionDeniedError):
        service.check(header, action="train:submit", resource="digits-v2", request_id=None)
    assert cli("principals", "disable", "bob")[0] == 0
    with pytest.raises(AuthenticationError):
        service.authenticate(header)
    assert "disabled" in cli("principals", "list")[1]
    listed = json.loads(cli("principals", "list", "--json")[1])
    assert listed == [
        {
            "name": "bob",
            "kind": "user",
            "disabled": True,
            "created_at": listed[0]["created_at"],
            "roles": [],
            "grants": [],
        }
    ]


def test_grant_in_permission_form(cli: Runner, service: AccessService) -> None:
    cli("principals", "create", "carol")
    header = "Bearer " + cli("tokens", "create", "--principal", "carol")[1].strip().splitlines()[-1]
    code, out = cli("principals", "grant", "carol", "model:predict:fraud-*")
    assert code == 0 and "granted model:predict on fraud-* to carol" in out
    assert cli("principals", "grant", "carol", "keys:admin")[0] == 0
    service.check(header, action="model:predict", resource="fraud-v2", request_id=None)
    service.check(header, action="keys:admin", resource="*", request_id=None)
    with pytest.raises(PermissionDeniedError):
        service.check(header, action="model:predict", resource="digits", request_id=None)
    assert cli("principals", "revoke", "carol", "model:predict:fraud-*")[0] == 0
    assert cli("principals", "revoke", "carol", "keys:admin", "*")[0] == 0  # the older form
    assert service.get_principal(name="carol").grants == frozenset()


POLICY = """
principals:
  - name: fraud-service
    kind: service
    roles: ["service:fraud-*"]
    permissions: ["model:explain:fraud-v2"]
"""


def test_access_apply_dry_run_export_and_prune(
    cli: Runner, service: AccessService, tmp_path: Path
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    service.create_principal(name="old-bot", kind="service")
    code, out = cli("access", "apply", str(path), "--dry-run", "--prune")
    assert code == 0 and "dry run: 4 changes" in out and "nothing was written" in out
    assert "+ principal fraud-service (service)" in out and "old-bot: disable" in out
    assert [p["name"] for p in json.loads(cli("principals", "list", "--json")[1])] == ["old-bot"]

    code, out = cli("access", "apply", str(path))
    assert code == 0 and f"applied 3 changes from {path}" in out
    assert "+ role service:fraud-* -> fraud-service" in out
    assert "+ permission model:explain:fraud-v2 -> fraud-service" in out
    code, out = cli("access", "apply", str(path))
    assert code == 0 and out.strip() == f"no changes: the database matches {path}"
    entries = json.loads(cli("audit", "tail", "--json")[1])
    assert [e["action"] for e in entries[-3:]] == ["access:admin"] * 3
    assert entries[-1]["principal"] == local_actor()

    code, out = cli("access", "export")
    assert code == 0 and "fraud-service" in out and "old-bot" in out
    exported = tmp_path / "exported.yaml"
    exported.write_text(out)
    assert cli("access", "apply", str(exported), "--prune")[1].startswith("no changes")

    code, out = cli("access", "apply", str(path), "--prune")
    assert code == 0 and "applied 1 change from" in out
    listed = {p["name"]: p for p in json.loads(cli("principals", "list", "--json")[1])}
    assert listed["old-bot"]["disabled"] and not listed["fraud-service"]["disabled"]


def test_access_apply_reports_bad_policy_on_one_line(
    cli: Runner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("principals:\n  - name: x\n    roles: [wizard]\n")
    capsys.readouterr()
    assert cli("access", "apply", str(path))[0] == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"error: {path}: principals[0] ('x'), field 'roles[0]': unknown role")


def test_roles_lists_builtin_roles(cli: Runner) -> None:
    code, out = cli("principals", "roles")
    assert code == 0
    assert "predictor" in out and "access:admin" in out
    assert "model:explain, model:generate, model:predict" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "ml-engineer" in lines and "analyst" in lines and "service" in lines
    assert "model:predict" in lines["service"] and "model:explain" not in lines["service"]
    assert "model:generate" not in lines["service"]
    assert "data:read" in lines["analyst"] and "data:write" in lines["ml-engineer"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (("principals", "create", "x", "--role", "wizard"), "unknown role"),
        (("principals", "create", "x", "--role", "predictor:../etc"), "invalid resource pattern"),
        (("principals", "grant", "nobody", "model:predict", "digits"), "no principal"),
        (("principals", "grant", "x", "model:fly", "digits"), "unknown action"),
        (("principals", "grant", "x", "model:predict:a", "b"), "already names a resource"),
        (("principals", "grant", "x", "model:predict:../x"), "invalid permission"),
        (("principals", "revoke", "x", "model:predict:a"), "no model:predict on a"),
        (("access", "apply", "/nonexistent/policy.yaml"), "cannot read policy file"),
        (("tokens", "create", "--principal", "nobody"), "no principal"),
        (("tokens", "create", "--principal", "x", "--expires-days", "3650"), "at most"),
        (("tokens", "revoke", "0123456789abcdef"), "no token"),
        (("audit", "tail", "-n", "0"), "between 1"),
    ],
)
def test_errors_are_one_line_on_stderr(
    cli: Runner,
    service: AccessService,
    capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
    message: str,
) -> None:
    if argv[0] != "principals" or argv[1] != "create":
        service.create_principal(name="x")
    capsys.readouterr()
    code, _ = cli(*argv)
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and message in err
    assert err.count("\n") == 1
    if argv[:2] == ("principals", "create"):
        with pytest.raises(Exception, match="no principal"):
            service.get_principal(name="x")


def test_duplicate_principal_is_refused(cli: Runner, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("principals", "create", "dup")[0] == 0
    assert cli("principals", "create", "dup")[0] == 1
    assert "already exists" in capsys.readouterr().err


def test_failed_save_revokes_the_token(cli: Runner, service: AccessService, tmp_path: Path) -> None:
    cli("principals", "create", "app")
    code, out = cli("tokens", "create", "--principal", "app", "--save", str(tmp_path))
    assert code == 1 and "ih_" not in out
    [info] = service.list_tokens(principal="app")
    assert info.revoked_at is not None


def test_bad_expires_days_is_a_usage_error(
    parser: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]
) -> None:
    for value in ("0", "-3", "soon"):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(["tokens", "create", "--principal", "a", "--expires-days", value])
        assert exc.value.code == 2
    assert "--expires-days" in capsys.readouterr().err


COMMANDS = [
    ("principals",),
    ("principals", "create"),
    ("principals", "list"),
    ("principals", "grant"),
    ("principals", "revoke"),
    ("principals", "disable"),
    ("principals", "roles"),
    ("tokens",),
    ("tokens", "create"),
    ("tokens", "list"),
    ("tokens", "revoke"),
    ("audit",),
    ("audit", "tail"),
    ("audit", "verify"),
    ("access",),
    ("access", "apply"),
    ("access", "export"),
]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_command_has_help(
    parser: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([*argv, "--help"])
    assert exc.value.code == 0
    assert "usage: inhouse " + " ".join(argv) in capsys.readouterr().out


def _walk(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += _walk(child)
    return found


def test_every_flag_and_command_is_explained(parser: argparse.ArgumentParser) -> None:
    parsers = _walk(parser)[1:]
    assert len(parsers) == len(COMMANDS)
    for sub in parsers:
        assert sub.description, sub.prog
        for action in sub._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{sub.prog} {action.dest}"
