"""Text data sets: CSV import into the data layer, read back by id, refusals; the CLI commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from inhouse.cli.import_cmd import add_import_commands
from inhouse.data import describe
from inhouse.data.text_import import append_text_rows, import_text_csv, read_text_rows
from inhouse.errors import ConflictError, InvalidInputError
from inhouse.schema import get_engine
from tests.hf_tiny import CLASSES, make_rows, write_csv


def test_csv_with_a_test_file_imports_in_order_with_class_indices(
    db_url: str, tmp_path: Path
) -> None:
    engine = get_engine(db_url)
    train = write_csv(tmp_path / "train.csv", make_rows(30))
    test = write_csv(tmp_path / "test.csv", make_rows(9, seed=5))
    classes = tmp_path / "categories.json"
    classes.write_text(json.dumps(list(reversed(CLASSES))))
    n = import_text_csv(
        engine,
        name="intents",
        csv_path=train,
        text_column="text",
        label_column="category",
        test_csv=test,
        class_names=json.loads(classes.read_text()),
    )
    assert (n.train_rows, n.test_rows, n.skipped_empty) == (30, 9, 0)
    info = describe(engine, "intents")
    assert (info.kind, info.train_rows, info.test_rows) == ("text", 30, 9)
    assert info.class_names == list(reversed(CLASSES))
    rows = read_text_rows(engine, "intents", split="train")
    first_text, first_label = make_rows(30)[0]
    assert rows.texts[0] == first_text and rows.labels[0] == info.class_names.index(first_label)
    assert rows.ids == sorted(rows.ids) and len(rows) == 30
    first, last = append_text_rows(engine, "intents", texts=["refund my money"], labels=[1])
    assert first == last == info.last_id + 1
    newer = read_text_rows(engine, "intents", after_id=info.last_id)
    assert newer.texts == ["refund my money"] and newer.labels == [1]
    with pytest.raises(ConflictError):
        import_text_csv(engine, name="intents", csv_path=train, label_column="category")


def test_split_is_fixed_and_bad_files_are_refused(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    path = write_csv(tmp_path / "all.csv", make_rows(50), columns=("utterance", "intent"))
    import_text_csv(engine, name="a", csv_path=path, text_column="utterance", label_column="intent")
    import_text_csv(engine, name="b", csv_path=path, text_column="utterance", label_column="intent")
    a, b = read_text_rows(engine, "a", split="test"), read_text_rows(engine, "b", split="test")
    assert a.texts == b.texts and len(a) == 10
    assert describe(engine, "a").class_names == CLASSES
    with pytest.raises(InvalidInputError, match="no column 'text'"):
        import_text_csv(engine, name="c", csv_path=path, label_column="intent")
    bad = write_csv(tmp_path / "bad.csv", [("ok text", "x"), ("  ", "y"), ("more", "y")])
    with pytest.raises(InvalidInputError, match="row 3: text is empty"):
        import_text_csv(engine, name="c", csv_path=bad, label_column="category")
    skipped = import_text_csv(
        engine, name="c", csv_path=bad, label_column="category", skip_empty=True
    )
    assert (skipped.train_rows + skipped.test_rows, skipped.skipped_empty) == (2, 1)
    nul = write_csv(tmp_path / "nul.csv", [("a\x00b", "x"), ("fine", "y")])
    with pytest.raises(InvalidInputError, match="NUL"):
        import_text_csv(engine, name="c", csv_path=nul, label_column="category")
    with pytest.raises(InvalidInputError, match="not a known class"):
        import_text_csv(
            engine,
            name="c",
            csv_path=path,
            text_column="utterance",
            label_column="intent",
            class_names=["refund", "transfer"],
        )
    with pytest.raises(InvalidInputError, match="label 7"):
        append_text_rows(engine, "a", texts=["x"], labels=[7])


def test_cli_mounts_models_import_and_data_import() -> None:
    parser = argparse.ArgumentParser(prog="inhouse")
    commands = parser.add_subparsers(dest="command")
    existing = commands.add_parser("models").add_subparsers(dest="action")
    existing.add_parser("list")
    add_import_commands(commands)
    args = parser.parse_args(["models", "import", "/m", "--name", "minilm"])
    assert (args.source, args.name, args.kind, args.max_length) == ("/m", "minilm", "text", None)
    args = parser.parse_args(
        [
            "data",
            "import",
            "--csv",
            "t.csv",
            "--text-column",
            "text",
            "--label-column",
            "category",
            "--name",
            "banking77",
        ]
    )
    assert (args.csv, args.label_column, args.test_fraction) == ("t.csv", "category", 0.2)
    assert parser.parse_args(["models", "list"]).action == "list"
