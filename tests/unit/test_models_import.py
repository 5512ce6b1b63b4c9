"""``inhouse models import PATH --kind KIND``: one command for every kind with an importing part.

The text kind imports a real (tiny, random) Hugging Face directory; the toy kind of
``tests/toy_kind`` is registered for these tests only and imported through the same command.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from inhouse.cli import build_parser, main
from inhouse.config import load_settings
from inhouse.kinds import ModelKind, load_module, register, unregister
from inhouse.services import registry
from tests.hf_tiny import make_tiny_bert


@pytest.fixture
def toy() -> Iterator[None]:
    register(ModelKind("toy", ("toy_arch",), "tests.toy_kind"))
    try:
        yield
    finally:
        unregister("toy")


def _run(home: Path, *argv: str) -> int:
    return main(["--home", str(home), "models", "import", *argv])


def test_text_is_the_default_kind_and_imports_a_model_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = make_tiny_bert(tmp_path / "tiny")
    assert _run(tmp_path, str(tiny), "--name", "tiny-bert", "--max-length", "16") == 0
    out = capsys.readouterr().out
    assert "tiny-bert v1: bert encoder," in out and "parameters" in out
    info = registry(load_settings(home=str(tmp_path))).get("tiny-bert", "latest")
    assert (info.spec["kind"], info.spec["role"], info.spec["max_length"]) == (
        "hf_text",
        "encoder",
        16,
    )
    assert info.lineage["source"]["path"] == str(tiny.resolve())
    assert _run(tmp_path, str(tmp_path / "missing"), "--name", "tiny-bert") == 2
    assert "does not exist" in capsys.readouterr().err
    assert _run(tmp_path, str(tiny), "--name", "tiny-bert", "--max-length", "0") == 2
    err = capsys.readouterr().err
    assert "max_length" in err and "--max-length" in err and err.count("\n") == 1


def test_a_kind_registered_in_a_test_is_imported_with_its_own_flags(
    toy: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "toy.json"
    source.write_text(json.dumps({"scale": 2.5}))
    argv = [str(source), "--kind", "toy", "--name", "lengths", "--threshold", "7"]
    assert _run(tmp_path, *argv) == 0
    assert "lengths v1: toy, threshold 7" in capsys.readouterr().out
    reg = registry(load_settings(home=str(tmp_path)))
    module = load_module(reg, reg.get("lengths", "latest"))
    assert float(module.scale.detach()) == 2.5 and module.threshold == 7
    assert module(torch.tensor([3, 12])).argmax(dim=1).tolist() == [0, 1]


def test_a_flag_of_another_kind_is_refused_by_name(
    toy: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "toy.json"
    source.write_text(json.dumps({"scale": 1}))
    assert _run(tmp_path, str(source), "--kind", "toy", "--name", "t", "--max-length", "8") == 2
    assert "importing a toy model has no --max-length" in capsys.readouterr().err
    assert _run(tmp_path, str(tmp_path), "--name", "t", "--threshold", "3") == 2
    assert "importing a text model has no --threshold" in capsys.readouterr().err
    assert registry(load_settings(home=str(tmp_path))).models() == []


def test_an_unknown_or_unimportable_kind_names_the_kinds(
    toy: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(tmp_path, str(tmp_path), "--kind", "nope", "--name", "m") == 2
    err = capsys.readouterr().err
    assert "unknown model kind 'nope'; known kinds: llm, tabular, text, toy" in err
    assert _run(tmp_path, str(tmp_path), "--kind", "tabular", "--name", "m") == 2
    err = capsys.readouterr().err
    assert "kind 'tabular' cannot be imported here; kinds that can: llm, text, toy" in err


def test_help_lists_the_importable_kinds_and_their_flags(
    toy: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["models", "import", "--help"])
    out = capsys.readouterr().out
    assert "text: PATH is a Hugging Face model directory" in out
    assert 'toy: PATH is a JSON file {"scale": <number>}' in out
    assert "--kind" in out and "--max-length" in out and "--threshold" in out
    assert "tabular:" not in out
