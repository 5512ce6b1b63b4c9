"""``inhouse data register``: the contract in --help, a table registered and listed, bad input
as one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from inhouse.cli import build_parser, main
from inhouse.config import load_settings
from inhouse.schema import get_engine


def test_register_help_states_the_append_only_contract(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["data", "register", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--table", "--key", "--label", "--time", "--features", "--classes"):
        assert flag in out
    assert "never updated or deleted once consumed" in out and "never copies" in out
    assert "splitmix64(key)" in out


def test_register_a_table_then_list_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = ["--home", str(tmp_path)]
    engine = get_engine(load_settings(home=str(tmp_path)).db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE sales (id INTEGER PRIMARY KEY, x REAL, w REAL, y TEXT)"))
        conn.execute(
            text("INSERT INTO sales VALUES (:i, :x, :w, :y)"),
            [{"i": i, "x": i / 7, "w": 1.0, "y": "yes" if i % 2 else "no"} for i in range(1, 41)],
        )
    args = ["data", "register", "--name", "sales", "--table", "sales", "--key", "id"]
    assert main([*home, *args, "--label", "y", "--classes", "no,yes"]) == 0
    out = capsys.readouterr().out
    assert "sales: registered sales in place, 2 features, 2 classes" in out
    assert main([*home, "data", "list"]) == 0
    assert "sales" in capsys.readouterr().out
    assert main([*home, *args, "--label", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no column 'nope'" in err and "\n" not in err


def test_registering_a_table_is_an_admin_action_no_other_role_holds() -> None:
    from inhouse.access.permissions import ACTIONS, Principal, RoleBinding, is_allowed

    assert "data:admin" in ACTIONS
    admin = Principal("root", roles=frozenset({RoleBinding("admin")}))
    assert is_allowed(admin, "data:admin", "orders")
    for role in ("ml-engineer", "operator", "trainer", "analyst", "service"):
        member = Principal("p", roles=frozenset({RoleBinding(role)}))
        assert not is_allowed(member, "data:admin", "orders")
