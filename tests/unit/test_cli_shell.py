"""The outer shell of the command line: lazy command groups, global flags, version, errors."""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

from inhouse import __version__
from inhouse.cli import build_parser, main
from inhouse.cli.parser import GROUPS, commands_of

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "ray", "sklearn", "transformers", "captum", "opacus", "numpy")
# Runs the CLI in a fresh interpreter, then prints which modules it imported.
PROBE = """
import json, sys
from inhouse.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _probe(*argv: str) -> tuple[str, int, set[str]]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=False
    )
    *output, last = result.stdout.rstrip("\n").splitlines()
    report = json.loads(last)
    return "\n".join(output), report["code"], set(report["modules"])


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_help_lists_every_group_without_importing_one() -> None:
    out, code, modules = _probe("--help")
    assert code == 0
    for name in GROUPS:
        assert f"    {name} " in out
    assert "may also follow the command" in out
    assert not [m for m in modules if m.endswith("_cmd") or m.startswith("inhouse.cli.demo")]
    assert _heavy(modules) == []


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"inhouse {__version__}"


def test_models_list_reads_the_database_without_torch_or_ray(tmp_path: Path) -> None:
    out, code, modules = _probe("--home", str(tmp_path), "models", "list")
    assert code == 0 and "(none)" in out
    assert "inhouse.cli.models_cmd" in modules and "inhouse.cli.jobs_cmd" not in modules
    assert _heavy(modules) == []


def test_global_flags_are_accepted_after_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    after = build_parser().parse_args(["cluster", "env", "--serve-port", "9000"])
    before = build_parser().parse_args(["--serve-port", "9000", "cluster", "env"])
    both = build_parser().parse_args(["--serve-port", "1", "cluster", "env", "--serve-port", "2"])
    neither = build_parser().parse_args(["--serve-port", "9000", "cluster", "env", "--home", "h"])
    assert (after.serve_port, before.serve_port, both.serve_port) == (9000, 9000, 2)
    assert (neither.serve_port, neither.home) == (9000, "h")
    shown = build_parser().parse_args(["models", "show", "m", "--version", "3", "--home", "h"])
    assert (shown.version, shown.home) == ("3", "h")  # a command's own --version wins
    assert main(["cluster", "env", "--home", str(tmp_path)]) == 0
    assert f"INHOUSE_HOME={tmp_path}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["cluster", "env", "--serve-port", "0"], "--serve-port"),
        (["--ray-gcs-port", "6379", "cluster", "env"], "--ray-gcs-port"),
        (["train", "--epochs", "0"], "--epochs"),
    ],
)
def test_a_config_error_names_the_flag_used(
    argv: list[str], flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--home", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert f"(set it with {flag} or INHOUSE_" in err and err.count("\n") == 1


def test_a_setting_without_a_flag_names_only_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INHOUSE_SECURITY__ENCRYPT_AT_REST", "maybe")
    assert main(["--home", str(tmp_path), "cluster", "env"]) == 2
    err = capsys.readouterr().err
    assert "(set it with INHOUSE_SECURITY__ENCRYPT_AT_REST)" in err


@pytest.mark.parametrize("module", sorted({module for module, _ in GROUPS.values()}))
def test_each_group_module_adds_the_commands_the_registry_lists(module: str) -> None:
    parser = argparse.ArgumentParser(prog="inhouse")
    commands = parser.add_subparsers(dest="command")
    import_module(f"inhouse.cli.{module}").add_parser(commands)
    added = {action.dest: action.help for action in commands._choices_actions}
    listed = {name: text for name, (owner, text) in GROUPS.items() if owner == module}
    assert added == listed


def test_every_command_and_option_is_explained() -> None:
    parser = build_parser()
    commands_of(parser).load_all()
    missing: list[str] = []

    def walk(node: argparse.ArgumentParser, path: str) -> None:
        for action in node._actions:
            if isinstance(action, argparse._SubParsersAction):
                lines = {choice.dest: choice.help for choice in action._choices_actions}
                for name, child in action._name_parser_map.items():
                    if not lines.get(name):
                        missing.append(f"{path} {name}")
                    walk(child, f"{path} {name}")
            elif not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(parser, "inhouse")
    assert missing == []


def test_only_the_command_line_imports_it() -> None:
    offenders = []
    for path in (ROOT / "inhouse").rglob("*.py"):
        if (ROOT / "inhouse" / "cli") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n == "inhouse.cli" or n.startswith("inhouse.cli.") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
