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
