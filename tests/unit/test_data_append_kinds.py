"""``data append`` reads a CSV through the data set's kind (``kinds/<name>/datasets.py``): the
command has no kind branch; a kind without a data-set part is a clear error."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from inhouse.cli import main
from inhouse.config import load_settings
from inhouse.data import create_dataset, get_dataset
from inhouse.kinds import ModelKind, kind_named, kinds_with, register, unregister
from inhouse.kinds.datasets import Appended
from inhouse.services import engine


@pytest.fixture
def toy() -> Iterator[None]:
    register(ModelKind("toy", ("toy_arch",), "tests.toy_kind"))
    try:
        yield
    finally:
        unregister("toy")


def test_both_built_in_kinds_read_their_own_csv(tmp_path: Path) -> None:
    db = engine(load_settings(home=str(tmp_path)))
    create_dataset(db, name="points", feature_names=["x", "y"], class_names=["a", "b"])
    create_dataset(db, name="texts", feature_names=[], class_names=["a", "b"], kind="text")
    table = tmp_path / "points.csv"
    table.write_text("y,label,x\n1.5,b,2\n0,0,0\n", encoding="utf-8")
    texts = tmp_path / "texts.csv"
    texts.write_text("body,label\nhello,b\n", encoding="utf-8")
    args = argparse.Namespace(label_column="label", text_column="body", split="test")
    points = kind_named("tabular").datasets.append_csv(
        db, get_dataset(db, "points"), argparse.Namespace(**vars(args), csv=str(table))
    )
    said = kind_named("text").datasets.append_csv(
        db, get_dataset(db, "texts"), argparse.Namespace(**vars(args), csv=str(texts))
    )
    assert points == Appended(1, 2, 2) and said == Appended(1, 1, 1)
    assert kinds_with("datasets") == ["tabular", "text"]


def test_a_kind_without_a_datasets_part_is_a_clear_error(
    toy: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = engine(load_settings(home=str(tmp_path)))
    create_dataset(db, name="lengths", feature_names=[], class_names=["short", "long"], kind="toy")
    csv = tmp_path / "rows.csv"
    csv.write_text("text,label\nhi,short\n", encoding="utf-8")
    argv = ["--home", str(tmp_path), "data", "append", "--dataset", "lengths", "--csv", str(csv)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "data sets of kind 'toy' cannot be appended to from a CSV here" in err
    assert "kinds that can: tabular, text" in err
