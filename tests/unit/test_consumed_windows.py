"""The append-only contract checked on inhouse's own tables, and migration 0003's ``seq``."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import (
    JSON,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    text,
)

from inhouse.data import append_rows, create_dataset, describe, read_rows
from inhouse.data.consumed import check_consumed, recorded
from inhouse.errors import DataChangedError
from inhouse.schema import alembic_config, get_engine


def _made(db_url: str) -> Engine:
    engine = get_engine(db_url)
    create_dataset(engine, name="s", feature_names=["a", "b"], class_names=["x", "y"])
    append_rows(engine, "s", features=[[float(i), 1.0] for i in range(10)], labels=[0, 1] * 5)
    return engine


@pytest.mark.parametrize(
    ("change", "now"),
    [
        ("UPDATE ds_s SET label = 1 - label WHERE seq = 4", "10 rows"),
        ("UPDATE ds_s SET features = '[3.5, 1.0]' WHERE seq = 4", "10 rows"),
        ("DELETE FROM ds_s WHERE seq = 9", "9 rows"),
    ],
)
def test_a_change_to_a_consumed_window_is_one_clear_error(
    db_url: str, change: str, now: str
) -> None:
    engine = _made(db_url)
    check_consumed(engine, "s", up_to=10, by="train-1")
    append_rows(engine, "s", features=[[0.0, 0.0]], labels=[1])
    check_consumed(engine, "s", up_to=None, by="train-2")
    with engine.begin() as conn:
        conn.execute(text(change))
    with pytest.raises(DataChangedError) as caught:
        check_consumed(engine, "s", up_to=11, by="train-3")
    message = caught.value.message
    assert "'s' changed in consumed rows seq 1..10: 10 rows" in message and now in message
    assert "\n" not in message and "never updated or deleted" in message
    assert [w.up_to_seq for w in recorded(engine, "s")] == [10]


def test_appending_keeps_windows_valid_and_each_is_recorded_once(db_url: str) -> None:
    engine = _made(db_url)
    check_consumed(engine, "s", up_to=6, by="a")
    check_consumed(engine, "s", up_to=4, by="b")
    check_consumed(engine, "s", up_to=10, by="c")
    append_rows(engine, "s", features=[[1.0, 1.0]] * 3, labels=[0] * 3)
    check_consumed(engine, "s", up_to=describe(engine, "s").last_id, by="d")
    windows = recorded(engine, "s")
    assert [(w.after_seq, w.up_to_seq, w.rows) for w in windows] == [
        (0, 6, 6),
        (6, 10, 4),
        (10, 13, 3),
    ]


def test_migration_0003_gives_existing_rows_seq_equal_to_id(db_url: str) -> None:
    legacy = create_engine(db_url)
    with legacy.begin() as conn:
        command.upgrade(alembic_config(connection=conn), "0002")
        old = Table(  # a row table as releases before sealing made it
            "ds_old",
            MetaData(),
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("split", String(8), nullable=False, server_default="train"),
            Column("features", JSON),
            Column("text", String(10)),
            Column("label", Integer, nullable=False),
        )
        old.create(conn)
        conn.execute(old.insert(), [{"features": [float(i)], "label": i % 2} for i in range(5)])
        conn.execute(text("DELETE FROM ds_old WHERE id = 2"))
        conn.execute(
            text(
                "INSERT INTO datasets (name, kind, n_features, feature_names, class_names, "
                "description) VALUES ('old', 'tabular', 1, '[\"a\"]', '[\"x\", \"y\"]', '')"
            )
        )
    legacy.dispose()
    engine = get_engine(db_url)
    rows = read_rows(engine, "old")
    assert rows.ids.tolist() == [1, 3, 4, 5] and rows.x[:, 0].tolist() == [0.0, 2.0, 3.0, 4.0]
    assert append_rows(engine, "old", features=[[9.0]], labels=[1]) == (6, 6)
