"""Packed feature storage: float32 and uint8 layouts, JSON rows beside packed ones, tables made
before the ``packed`` column, and sharded reads, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import torch
from sqlalchemy import insert, text

from inhouse.data import append_rows, create_dataset, describe, read_rows, seed
from inhouse.data.table import DatasetRecord, rows_table
from inhouse.errors import InvalidInputError
from inhouse.schema import get_engine


def test_seeded_rows_are_packed_and_read_back_exactly(db_url: str) -> None:
    engine = get_engine(db_url)
    seed(engine, "digits")
    table = rows_table("digits")
    with engine.connect() as conn:
        packed, json_rows = conn.execute(
            text(
                f"SELECT count(packed), count(features) FROM {table.name}"  # noqa: S608
            )
        ).one()
    assert packed == 1797 and json_rows == 0
    from sklearn.datasets import load_digits

    rows = read_rows(engine, "digits")
    expected = torch.tensor(load_digits().data, dtype=torch.float32)
    assert rows.x.shape == (1797, 64)
    assert {tuple(r) for r in rows.x.tolist()} == {tuple(r) for r in expected.tolist()}


def test_plain_sql_json_rows_read_beside_packed_rows(db_url: str) -> None:
    engine = get_engine(db_url)
    info, _ = seed(engine, "breast_cancer")
    with engine.begin() as conn:
        conn.execute(insert(rows_table("breast_cancer")), [{"features": [0.5] * 30, "label": 1}])
    describe(engine, "breast_cancer")  # seals the plain-SQL row: it is numbered (seq) now
    first, _ = append_rows(engine, "breast_cancer", features=[[2.0] * 30], labels=[0])
    tail = read_rows(engine, "breast_cancer", after_id=info.last_id)
    assert tail.x.tolist() == [[0.5] * 30, [2.0] * 30]
    assert tail.y.tolist() == [1, 0] and tail.ids.tolist() == [first - 1, first]


def test_uint8_layout_scales_on_read_and_refuses_values_off_its_grid(db_url: str) -> None:
    engine = get_engine(db_url)
    create_dataset(
        engine,
        name="pixels",
        feature_names=["a", "b"],
        class_names=["0", "1"],
        layout={"dtype": "uint8", "scale": 0.5},
    )
    append_rows(engine, "pixels", features=[[0.0, 127.5], [1.5, 0.5]], labels=[0, 1])
    with engine.connect() as conn:
        blob = conn.execute(text("SELECT packed FROM ds_pixels ORDER BY id")).scalars().first()
    assert bytes(blob) == bytes([0, 255])
    assert read_rows(engine, "pixels").x.tolist() == [[0.0, 127.5], [1.5, 0.5]]
    with pytest.raises(InvalidInputError, match="row 0, feature 1: 0.3 is not a multiple"):
        append_rows(engine, "pixels", features=[[1.0, 0.3]], labels=[0])
    with pytest.raises(InvalidInputError, match="not a multiple"):
        append_rows(engine, "pixels", features=[[128.0, 0.0]], labels=[0])
    assert describe(engine, "pixels").rows == 2


def test_a_table_made_before_packed_is_read_then_gets_the_column_on_first_write(
    db_url: str,
) -> None:
    engine = get_engine(db_url)
    create_dataset(engine, name="old", feature_names=["a", "b"], class_names=["n", "y"])
    key = "BIGSERIAL" if engine.dialect.name == "postgresql" else "INTEGER"
    with engine.begin() as conn:  # as an older inhouse made it: no packed column
        conn.execute(text("DROP TABLE ds_old"))
        conn.execute(
            text(
                f"CREATE TABLE ds_old (id {key} PRIMARY KEY, ingested_at TIMESTAMP, "
                "split VARCHAR(8) NOT NULL DEFAULT 'train', features JSON, text TEXT, "
                "label INTEGER NOT NULL, seq BIGINT UNIQUE)"  # seq: as migration 0003 left it
            )
        )
        conn.execute(text("INSERT INTO ds_old (features, label) VALUES ('[1.0, 2.0]', 1)"))
        conn.execute(DatasetRecord.__table__.update().values(layout=None))  # type: ignore[attr-defined]
    describe(engine, "old")  # seals the plain-SQL row
    assert read_rows(engine, "old").x.tolist() == [[1.0, 2.0]]
    append_rows(engine, "old", features=[[3.0, 4.0]], labels=[0])
    rows = read_rows(engine, "old")
    assert rows.x.tolist() == [[1.0, 2.0], [3.0, 4.0]] and rows.y.tolist() == [1, 0]


def test_shards_are_disjoint_and_cover_the_split(db_url: str) -> None:
    engine = get_engine(db_url)
    seed(engine, "breast_cancer")
    whole = read_rows(engine, "breast_cancer", split="train")
    parts = [read_rows(engine, "breast_cancer", split="train", shard=(r, 3)) for r in range(3)]
    ids = [set(p.ids.tolist()) for p in parts]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set().union(*ids) == set(whole.ids.tolist())
    assert sum(len(p) for p in parts) == len(whole)
    assert read_rows(engine, "breast_cancer", split="train", shard=(0, 1)).ids.equal(whole.ids)
    for bad in [(2, 2), (-1, 2), (0, 0)]:
        with pytest.raises(InvalidInputError, match="shard"):
            read_rows(engine, "breast_cancer", shard=bad)


def test_unknown_dtype_is_refused(sqlite_url: str) -> None:
    with pytest.raises(InvalidInputError, match="dtype 'int4'"):
        create_dataset(
            get_engine(sqlite_url),
            name="x",
            feature_names=["a"],
            class_names=["0", "1"],
            layout={"dtype": "int4"},
        )
