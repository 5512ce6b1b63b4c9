"""Tabular import from CSV and Parquet: inferred schema, overrides, the held-out split, and
bad files refused in one line with nothing half imported."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inhouse.config import StorageSettings
from inhouse.data import describe, get_dataset, list_datasets, read_rows
from inhouse.data.tabular_import import TabularOptions, import_tabular
from inhouse.errors import InvalidInputError, UnavailableError
from inhouse.schema import get_engine
from tests.s3_server import S3Server

CSV = """age,city,income,label
30,paris,1.5,yes
41,berlin,2.5,no
25,paris,0.5,yes
52,rome,3.0,no
38,berlin,2.0,yes
"""


def _write(tmp_path: Path, body: str, name: str = "people.csv") -> str:
    path = tmp_path / name
    path.write_text(body)
    return str(path)


def test_csv_schema_is_inferred_with_one_hot_categories(db_url: str, tmp_path: Path) -> None:
    engine = get_engine(db_url)
    uri = _write(tmp_path, CSV)
    done = import_tabular(engine, name="people", uri=uri, options=TabularOptions(test_fraction=0.4))
    assert done.feature_names == ["age", "city=berlin", "city=paris", "city=rome", "income"]
    assert done.class_names == ["no", "yes"]
    assert (done.train_rows, done.test_rows) == (3, 2)
    record = get_dataset(engine, "people")
    layout = record.layout or {}
    assert layout["dtype"] == "float32"
    assert layout["import"]["columns"]["city"] == {
        "type": "categorical",
        "encoding": "onehot",
        "categories": ["berlin", "paris", "rome"],
    }
    assert layout["import"]["split"]["test_rows"] == 2 and layout["import"]["split"]["seed"] == 0
    rows = read_rows(engine, "people")
    assert rows.x.tolist()[0] == [30.0, 0.0, 1.0, 0.0, 1.5]
    assert rows.y.tolist() == [1, 0, 1, 0, 1]
    test_ids = read_rows(engine, "people", split="test").ids.tolist()
    again = import_tabular(
        engine, name="people2", uri=uri, options=TabularOptions(test_fraction=0.4)
    )
    assert again.layout["import"]["split"] == layout["import"]["split"]
    first = describe(engine, "people2").first_id or 0
    offset = first - (describe(engine, "people").first_id or 0)
    assert [i - offset for i in read_rows(engine, "people2", split="test").ids.tolist()] == [
        i for i in test_ids
    ]


def test_overrides_pick_features_label_and_ordinal_codes(sqlite_url: str, tmp_path: Path) -> None:
    engine = get_engine(sqlite_url)
    body = "zone,score,grade,extra\n3,0.5,a,x\n1,0.25,b,y\n10,1.0,a,z\n"
    options = TabularOptions(
        features=["score", "zone"],
        label="grade",
        categorical=["zone"],
        encoding="ordinal",
        test_fraction=0.0,
    )
    done = import_tabular(engine, name="codes", uri=_write(tmp_path, body), options=options)
    assert done.feature_names == ["score", "zone"] and done.class_names == ["a", "b"]
    assert done.layout["import"]["columns"]["zone"]["categories"] == ["1", "3", "10"]
    assert read_rows(engine, "codes").x.tolist() == [[0.5, 1.0], [0.25, 0.0], [1.0, 2.0]]


def test_parquet_is_imported_with_uint8_layout(sqlite_url: str, tmp_path: Path) -> None:
    engine = get_engine(sqlite_url)
    path = tmp_path / "pixels.parquet"
    table = pa.table({"p0": [0, 255, 128], "p1": [1, 2, 3], "label": [0, 1, 1]})
    pq.write_table(table, path)
    options = TabularOptions(dtype="uint8", scale=1.0, test_fraction=0.0)
    done = import_tabular(engine, name="pixels", uri=str(path), options=options)
    assert done.class_names == ["0", "1"] and done.layout["import"]["format"] == "parquet"
    assert read_rows(engine, "pixels").x.tolist() == [[0.0, 1.0], [255.0, 2.0], [128.0, 3.0]]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (CSV.replace("0.5,yes", ",yes"), r"people.csv line 4, column 'income': missing value"),
        (
            CSV.replace("2.0,yes", "2.o,yes"),
            r"people.csv line 6, column 'income': '2.o' is not a number",
        ),
        (CSV.replace("52,rome,3.0,no", "52,rome,3.0"), r"people.csv line 5: the row has 3 fields"),
        (CSV.replace("label", "target"), r"no label column 'label'; name it with --label"),
        (CSV.replace("41,berlin,2.5,no", "41,berlin,inf,no"), r"line 3, column 'income'.*finite"),
        (CSV.replace(",no", ",yes"), r"one class only"),
        ("age,label\n", r"has no data rows"),
    ],
)
def test_a_bad_file_is_refused_in_one_line_and_nothing_is_imported(
    db_url: str, tmp_path: Path, body: str, message: str
) -> None:
    engine = get_engine(db_url)
    with pytest.raises(InvalidInputError, match=message) as caught:
        import_tabular(engine, name="people", uri=_write(tmp_path, body))
    assert "\n" not in str(caught.value)
    assert "people" not in list_datasets(engine)


def test_a_failure_while_writing_leaves_no_data_set(sqlite_url: str, tmp_path: Path) -> None:
    engine = get_engine(sqlite_url)
    options = TabularOptions(dtype="uint8", scale=1.0)  # income 1.5 is not a byte
    with pytest.raises(InvalidInputError, match="not a multiple"):
        import_tabular(engine, name="people", uri=_write(tmp_path, CSV), options=options)
    assert list_datasets(engine) == []


def test_missing_file_and_unknown_format(sqlite_url: str, tmp_path: Path) -> None:
    engine = get_engine(sqlite_url)
    with pytest.raises(InvalidInputError, match="does not exist"):
        import_tabular(engine, name="x", uri=str(tmp_path / "nope.csv"))
    with pytest.raises(InvalidInputError, match="give --format"):
        import_tabular(engine, name="x", uri=_write(tmp_path, CSV, "data.bin"))
    with pytest.raises(UnavailableError, match="s3://bucket/data.csv: cannot reach the storage"):
        import_tabular(  # no endpoint configured: the default AWS endpoint, unreachable here
            engine,
            name="x",
            uri="s3://bucket/data.csv",
            settings=StorageSettings(connect_timeout_s=1, request_timeout_s=2),
        )


def test_cli_imports_a_tabular_file_and_refuses_a_bad_one_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from inhouse.cli import main

    home = ["--home", str(tmp_path / "home")]
    uri = _write(tmp_path, CSV)
    flags = ["--categorical", "age", "--encoding", "ordinal", "--test-fraction", "0.2"]
    assert main([*home, "data", "import", uri, "--name", "people", *flags]) == 0
    out = capsys.readouterr().out
    assert "people: 4 train + 1 test rows, 3 features (age, city, income)" in out
    bad = _write(tmp_path, CSV.replace("2.5,no", "2.5,"), "bad.csv")
    assert main([*home, "data", "import", bad, "--name", "bad", "--label", "label"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("bad.csv line 3, column 'label': the cell is empty")
    text_csv = _write(tmp_path, "text,label\nhello there,a\ngood bye,b\n", "texts.csv")
    assert main([*home, "data", "import", text_csv, "--kind", "text", "--name", "t"]) == 0
    assert "t: 2 train + 0 test texts" in capsys.readouterr().out


def test_append_to_an_imported_data_set_encodes_as_the_import_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from inhouse.cli import main
    from inhouse.config import load_settings
    from inhouse.services import engine

    home = ["--home", str(tmp_path / "home")]
    assert main([*home, "data", "import", _write(tmp_path, CSV), "--name", "people"]) == 0
    new = _write(tmp_path, "income,city,age,label,note\n9.5,rome,60,no,x\n", "new.csv")
    assert main([*home, "data", "append", "--dataset", "people", "--csv", new]) == 0
    assert "people: appended 1 train rows" in capsys.readouterr().out
    rows = read_rows(engine(load_settings(home=str(tmp_path / "home"))), "people")
    assert rows.x.tolist()[-1] == [60.0, 0.0, 0.0, 1.0, 9.5] and rows.y.tolist()[-1] == 0
    bad = _write(tmp_path, "income,city,age,label\n1,oslo,20,no\n", "bad.csv")
    assert main([*home, "data", "append", "--dataset", "people", "--csv", bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith(
        "bad.csv line 2, column 'city': 'oslo' is not one of the data set's 3 categories"
    )


def test_files_on_object_storage_import_through_the_storage_settings(
    s3: S3Server, sqlite_url: str, tmp_path: Path
) -> None:
    import pyarrow.fs as pafs

    from inhouse.config import StorageSettings
    from inhouse.storage import filesystem_for

    storage = StorageSettings.model_validate(s3.storage())
    prefix = s3.uri("imports")
    filesystem, base = filesystem_for(prefix, storage)
    with filesystem.open_output_stream(f"{base}/people.csv") as out:
        out.write(CSV.encode())
    table = pa.table({"age": [30, 41, 25, 52], "label": ["yes", "no", "yes", "no"]})
    with filesystem.open_output_stream(f"{base}/people.parquet") as out:
        pq.write_table(table, out)
    assert isinstance(filesystem, pafs.S3FileSystem)

    engine = get_engine(sqlite_url)
    done = import_tabular(engine, name="people", uri=f"{prefix}/people.csv", settings=storage)
    assert done.train_rows + done.test_rows == 5
    parquet = import_tabular(engine, name="ages", uri=f"{prefix}/people.parquet", settings=storage)
    assert parquet.feature_names == ["age"] and parquet.class_names == ["no", "yes"]
    with pytest.raises(InvalidInputError, match="missing.csv"):
        import_tabular(engine, name="gone", uri=f"{prefix}/missing.csv", settings=storage)
    assert "gone" not in list_datasets(engine)
