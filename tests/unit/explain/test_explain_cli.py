"""``inhouse explain`` on a temporary SQLite registry: a tiny digits MLP, explained locally."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from inhouse.cli.explain_cmd import add_parser as add_explain_command
from inhouse.cli.explain_cmd import cmd_explain, run_explain
from inhouse.config import load_settings
from inhouse.data import read_rows, seed
from inhouse.explain import PNG_MAGIC
from inhouse.kinds import build_model, register_module
from inhouse.models import MLPSpec
from inhouse.registry import Registry
from inhouse.schema import get_engine
from inhouse.training import train_one_epoch


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    root = tmp_path_factory.mktemp("explain_cli")
    engine = get_engine(f"sqlite:///{root / 'inhouse.db'}")
    info, _ = seed(engine, "digits")
    train = read_rows(engine, "digits", split="train")
    spec = MLPSpec(
        input_dim=64,
        hidden=[32],
        num_classes=10,
        feature_names=info.feature_names,
        class_names=info.class_names,
    ).model_dump()
    torch.manual_seed(0)
    model = build_model(spec)
    model[0].fit(train.x)
    loader = DataLoader(TensorDataset(train.x, train.y), batch_size=32, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(2):
        train_one_epoch(model, loader, optimizer)
    registry = Registry(engine=engine, root=root / "registry")
    register_module(
        registry, "digits", module=model, spec=spec, metrics={}, lineage={"dataset": "digits"}
    )
    registry.set_alias("digits", "champion", 1)
    return registry


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="inhouse")
    add_explain_command(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["explain", *argv])


def run(registry: Registry, *argv: str) -> int:
    return run_explain(parse(*argv), registry=registry, engine=registry.engine)


@pytest.mark.parametrize("method", ["ig", "shap"])
def test_explain_test_rows_with_png(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str], method: str
) -> None:
    png = tmp_path / "out" / f"{method}.png"
    extra = ["--n-samples", "100"] if method == "shap" else []
    code = run(
        registry, "digits", "--from-test", "2", "--method", method, "--top", "4",
        "--png", str(png), *extra,
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert not list(png.parent.glob(".*.tmp"))
    lines = out.out.splitlines()
    name = "IntegratedGradients" if method == "ig" else "KernelShap"
    assert lines[0] == f"==> explaining digits v1 on 2 rows with {name} ..."
    rows = [i for i, line in enumerate(lines) if line.startswith("row ")]
    assert len(rows) == 2
    assert ", actual " in lines[rows[0]] and "attributions for class" in lines[rows[0]]
    top = lines[rows[0] + 1 : rows[0] + 5]
    assert all(line.strip().startswith("pixel_") for line in top)
    values = [abs(float(line.split()[-1])) for line in top]
    assert values == sorted(values, reverse=True)
    assert f"wrote {png} (8x8 heat map of row 0)" in lines[-1]
    assert lines[-2].startswith(f"{name}: 2 rows in ")


def test_explain_inline_row_with_target(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    row = [float(v) for v in read_rows(registry.engine, "digits", split="test").x[0]]
    code = run(
        registry, "digits", "--input", json.dumps([row]), "--target", "7", "--top", "3",
        "--baseline", "mean",
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "attributions for class 7" in out and ", actual" not in out
    assert "baseline mean" in out
    assert len([line for line in out.splitlines() if line.startswith("  pixel_")]) == 3


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["nosuch"], "has no version 'champion'"),
        (["digits", "--version", "9"], "has no version '9'"),
        (["digits", "--input", "[[1, 2"], "--input is not JSON"),
        (["digits", "--input", "[[1, 2]]"], "list of 64 numbers"),
        (["digits", "--from-test", "500"], "too many instances: 360 > limit 64"),
        (["digits", "--target", "10"], "target 10 out of range"),
        (["digits", "--n-steps", "100000"], "too many n_steps"),
    ],
)
def test_errors_are_one_line_and_exit_1(
    registry: Registry, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    assert run(registry, *argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err
    assert err.count("\n") == 1


def test_unwritable_png_is_an_error(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert run(registry, "digits", "--n-steps", "4", "--png", str(blocker / "x.png")) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_parser_and_handler(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("digits")
    assert args.handler is cmd_explain
    assert (args.method, args.from_test, args.top, args.version) == ("ig", 1, 10, "champion")
    with pytest.raises(SystemExit):
        parse("digits", "--input", "[[1]]", "--from-test", "2")
    with pytest.raises(SystemExit):
        parse("digits", "--top", "0")
    with pytest.raises(SystemExit) as info:
        parse("--help")
    assert info.value.code == 0
    assert "--png" in capsys.readouterr().out


def test_handler_opens_services_from_settings(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(home=registry.root.parent, security={"encrypt_at_rest": False})
    assert cmd_explain(settings, parse("digits", "--n-steps", "4", "--top", "1")) == 0
    assert "row 0: predicted " in capsys.readouterr().out
