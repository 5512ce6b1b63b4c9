"""The command line: every command explains itself, bad input is one line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from inhouse.cli import build_parser, main

COMMANDS = [
    [],
    ["cluster"],
    ["cluster", "up"],
    ["cluster", "down"],
    ["cluster", "status"],
    ["data"],
    ["data", "seed"],
    ["data", "list"],
    ["data", "append"],
    ["models"],
    ["models", "list"],
    ["models", "show"],
    ["train"],
    ["deploy"],
    ["predict"],
    ["demo"],
    ["explain"],
    ["compress"],
    ["keys"],
    ["keys", "rotate"],
    ["certs", "init"],
    ["principals", "create"],
    ["tokens", "create"],
    ["audit", "verify"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: inhouse" in capsys.readouterr().out


def test_train_help_documents_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--epochs", "--batch-size", "--lr", "--num-workers", "--use-gpu", "--promote"):
        assert flag in out


def test_data_and_models_without_a_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = ["--home", str(tmp_path)]
    assert main([*home, "data", "seed", "digits"]) == 0
    assert "1437 train + 360 test rows" in capsys.readouterr().out
    assert main([*home, "data", "list"]) == 0
    assert "digits" in capsys.readouterr().out
    assert main([*home, "models", "show", "digits"]) == 2
    assert "has no version 'champion'" in capsys.readouterr().err
    assert main([*home, "models", "list"]) == 0


def test_bad_settings_are_one_line_errors(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "inhouse.cli", "--home", str(tmp_path), "train", "--epochs", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "train.epochs" in result.stderr and "--epochs" in result.stderr


def test_operations_with_a_token_need_its_permission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import timedelta

    from inhouse import services
    from inhouse.config import load_settings

    home = ["--home", str(tmp_path)]
    access = services.access(load_settings(home=str(tmp_path)))
    access.create_principal(name="viewer", kind="user", roles=["predictor"])
    token = access.issue_token(principal="viewer", expires_in=timedelta(hours=1)).token
    monkeypatch.setenv("INHOUSE_TOKEN", token)
    assert main([*home, "data", "seed", "digits"]) == 2  # predictors may not write data
    assert "lacks 'data:write'" in capsys.readouterr().err
    assert main([*home, "train", "--epochs", "1"]) == 2  # refused before any cluster call
    monkeypatch.setenv("INHOUSE_TOKEN", "ih_0000000000000000_" + "x" * 43)
    assert main([*home, "data", "seed", "breast_cancer"]) == 2
    assert "invalid token" in capsys.readouterr().err
    monkeypatch.delenv("INHOUSE_TOKEN")
    assert main([*home, "data", "seed", "digits"]) == 0  # the local owner
    entries = access.audit.tail(20)
    assert {e.outcome for e in entries} >= {"allow", "deny"}
    assert any(e.principal.startswith("local:") and e.action == "data:write" for e in entries)


def test_data_append_from_csv_feeds_the_stream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from inhouse.config import load_settings
    from inhouse.data import read_rows
    from inhouse.data.stream import position
    from inhouse.services import engine

    home = ["--home", str(tmp_path)]
    assert main([*home, "data", "seed", "digits"]) == 0
    names = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]
    good = tmp_path / "new.csv"
    rows = [",".join(["label", *names[::-1]])]  # any column order: matched by name
    rows += [",".join(["7", *(["1.5"] * 64)]), ",".join(["3", *(["0"] * 64)])]
    good.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert main([*home, "data", "append", "--dataset", "digits", "--csv", str(good)]) == 0
    assert "appended 2 train rows (ids 1798..1799)" in capsys.readouterr().out
    db = engine(load_settings(home=str(tmp_path)))
    assert position(db, "digits", after_id=1797).new_train_rows == 2
    added = read_rows(db, "digits", after_id=1797)
    assert added.y.tolist() == [7, 3] and float(added.x[0, 0]) == 1.5
    bad_cells = {
        "nan": "not finite",
        "abc": "is not a number",
    }
    for cell, message in bad_cells.items():
        bad = tmp_path / f"bad_{cell}.csv"
        bad.write_text(",".join(["label", *names]) + "\n" + ",".join(["1", cell, *(["0"] * 63)]))
        assert main([*home, "data", "append", "--dataset", "digits", "--csv", str(bad)]) == 2
        err = capsys.readouterr().err
        assert "line 2: pixel_0_0" in err and message in err and err.count("\n") == 1
    wrong_label = tmp_path / "label.csv"
    wrong_label.write_text(",".join(["label", *names]) + "\n" + ",".join(["10", *(["0"] * 64)]))
    assert main([*home, "data", "append", "--dataset", "digits", "--csv", str(wrong_label)]) == 2
    assert "label '10' is neither a class name nor an index 0..9" in capsys.readouterr().err
    short = tmp_path / "short.csv"
    short.write_text("label,pixel_0_0\n1,0\n")
    assert main([*home, "data", "append", "--dataset", "digits", "--csv", str(short)]) == 2
    assert "lacks column(s) 'pixel_0_1'" in capsys.readouterr().err
    assert main([*home, "data", "append", "--dataset", "digits", "--csv", "/nope.csv"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert position(db, "digits", after_id=1797).new_train_rows == 2  # nothing half-written


def test_data_append_adds_texts_to_a_text_data_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from inhouse.config import load_settings
    from inhouse.data.text_import import read_text_rows
    from inhouse.services import engine

    home = ["--home", str(tmp_path)]
    first = tmp_path / "intents.csv"
    first.write_text("text,intent\nwhere is my card,card\nrefund me,refund\n", encoding="utf-8")
    base = ["data", "import", "--csv", str(first), "--name", "intents", "--label-column", "intent"]
    assert main([*home, *base]) == 0
    capsys.readouterr()
    new = tmp_path / "new.csv"
    new.write_text("intent,body\nrefund,money back please\n0,card still not here\n", "utf-8")
    append = ["data", "append", "--dataset", "intents", "--csv", str(new)]
    flags = ["--text-column", "body", "--label-column", "intent"]
    assert main([*home, *append, *flags]) == 0
    assert "intents: appended 2 train rows" in capsys.readouterr().out
    rows = read_text_rows(engine(load_settings(home=str(tmp_path))), "intents", split="train")
    assert rows.texts[-2:] == ["money back please", "card still not here"]
    assert rows.labels[-2:] == [1, 0]  # classes sorted: card, refund
    bad = tmp_path / "bad.csv"
    bad.write_text("intent,body\nloan,give me a loan\n", "utf-8")
    assert main([*home, "data", "append", "--dataset", "intents", "--csv", str(bad), *flags]) == 2
    err = capsys.readouterr().err
    assert "line 2: label 'loan' is neither a class name nor an index 0..1" in err
    assert len(read_text_rows(engine(load_settings(home=str(tmp_path))), "intents")) == 4
