"""``data register``: a user's table read in place, its stream, split and contract check."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from inhouse.data import append_rows, describe, get_dataset, read_rows
from inhouse.data.consumed import check_consumed, recorded
from inhouse.data.external import register_table
from inhouse.data.stream import position
from inhouse.errors import ConflictError, DataChangedError, InvalidInputError
from inhouse.schema import get_engine

ROWS = 200


def _user_table(engine: Engine, rows: int = ROWS, *, start: int = 1) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS events (event_id BIGINT PRIMARY KEY, "
                "ts TIMESTAMP, a DOUBLE PRECISION, b DOUBLE PRECISION, note TEXT, y INTEGER)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO events (event_id, ts, a, b, note, y) "
                "VALUES (:k, CURRENT_TIMESTAMP, :a, :b, 'n', :y)"
            ),
            [{"k": k, "a": k / 10, "b": -k, "y": k % 3} for k in range(start, start + rows)],
        )


def _register(engine: Engine, **kw: object) -> None:
    args: dict[str, object] = {"name": "ev", "table": "events", "key": "event_id", "label": "y"}
    register_table(engine, **{**args, "time": "ts", **kw})  # type: ignore[arg-type]


def test_a_registered_table_is_read_in_place_with_a_split_fixed_by_the_key(db_url: str) -> None:
    engine = get_engine(db_url)
    _user_table(engine)
    _register(engine)
    record = get_dataset(engine, "ev")
    assert record.source is not None and record.source["features"] == ["a", "b"]
    assert record.class_names == ["0", "1", "2"]
    info = describe(engine, "ev")
    assert info.rows == ROWS and info.first_id == 1 and info.last_id == ROWS
    assert 0.1 * ROWS < info.test_rows < 0.3 * ROWS
    train, test = read_rows(engine, "ev", split="train"), read_rows(engine, "ev", split="test")
    assert len(train) + len(test) == ROWS and len(test) == info.test_rows
    assert not set(train.ids.tolist()) & set(test.ids.tolist())
    every = read_rows(engine, "ev")
    keys = (every.x[:, 1] * -1).round().long()  # b = -key
    assert every.y.tolist() == (keys % 3).tolist()
    assert read_rows(engine, "ev", split="test").ids.tolist() == test.ids.tolist()  # stable
    with engine.connect() as conn:  # never copied: the only inhouse table is the key map
        names = {
            r[0]
            for r in conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'table'")
                if engine.dialect.name == "sqlite"
                else text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            )
        }
    assert "ds_ev" not in names and "dsk_ev" in names


def test_new_rows_of_a_registered_table_reach_the_stream(db_url: str) -> None:
    engine = get_engine(db_url)
    _user_table(engine, 10)
    _register(engine, test_fraction=0.0)
    assert position(engine, "ev", after_id=10).new_train_rows == 0
    _user_table(engine, 5, start=100)
    where = position(engine, "ev", after_id=10)
    assert (where.max_row_id, where.new_train_rows) == (15, 5)
    fresh = read_rows(engine, "ev", split="train", after_id=10)
    assert fresh.ids.tolist() == [11, 12, 13, 14, 15] and fresh.x[0].tolist() == [10.0, -100.0]
    with pytest.raises(InvalidInputError, match="append rows to that table itself"):
        append_rows(engine, "ev", features=[[1.0, 2.0]], labels=[0])


@pytest.mark.integration
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_registered_key_committing_late_is_not_skipped(db_url: str) -> None:
    engine = get_engine(db_url)
    _user_table(engine, 3)
    _register(engine, test_fraction=0.0)
    slow = engine.connect()
    try:
        tx = slow.begin()
        slow.execute(text("INSERT INTO events (event_id, a, b, y) VALUES (50, 5, -50, 1)"))
        _user_table(engine, 1, start=60)  # key 60 commits first
        seen = position(engine, "ev", after_id=3)
        assert (seen.max_row_id, seen.new_train_rows) == (4, 1)
        tx.commit()
    finally:
        slow.close()
    late = position(engine, "ev", after_id=4)
    assert (late.max_row_id, late.new_train_rows) == (5, 1)
    assert read_rows(engine, "ev", after_id=4).x.tolist() == [[5.0, -50.0]]


def test_registration_refuses_what_it_cannot_read(db_url: str) -> None:
    engine = get_engine(db_url)
    _user_table(engine, 5)
    with pytest.raises(InvalidInputError, match="'nope' not found"):
        _register(engine, table="nope")
    with pytest.raises(InvalidInputError, match="no column 'zz'"):
        _register(engine, features=["a", "zz"])
    with pytest.raises(InvalidInputError, match="'note' is not numeric"):
        _register(engine, features=["a", "note"])
    for own in ("access_tokens", "public.audit_log", "ds_digits", "alembic_version"):
        with pytest.raises(InvalidInputError, match="one of inhouse's own tables"):
            _register(engine, table=own)
    with pytest.raises(InvalidInputError, match="invalid table name"):
        _register(engine, table="events; drop table x")
    with pytest.raises(InvalidInputError, match="a label must be an integer class index"):
        _register(engine, label="a", features=["b"])
    with pytest.raises(InvalidInputError, match="holds 2"):
        _register(engine, classes=["p", "q"])
    _register(engine, classes=["p", "q", "r"])
    assert get_dataset(engine, "ev").class_names == ["p", "q", "r"]
    with pytest.raises(ConflictError, match="already exists"):
        _register(engine)


def test_a_change_to_consumed_rows_of_a_registered_table_stops_training(db_url: str) -> None:
    engine = get_engine(db_url)
    _user_table(engine, 20)
    _register(engine)
    check_consumed(engine, "ev", up_to=describe(engine, "ev").last_id, by="run-1")
    _user_table(engine, 5, start=100)  # appending is the contract: fine
    check_consumed(engine, "ev", up_to=describe(engine, "ev").last_id, by="run-2")
    assert [(w.after_seq, w.up_to_seq, w.rows) for w in recorded(engine, "ev")] == [
        (0, 20, 20),
        (20, 25, 5),
    ]
    with engine.begin() as conn:
        conn.execute(text("UPDATE events SET a = 99 WHERE event_id = 102"))
    with pytest.raises(DataChangedError, match=r"'ev' changed in consumed rows seq 21\.\.25"):
        check_consumed(engine, "ev", up_to=None, by="run-3")


def test_shards_of_a_registered_table_are_disjoint_and_cover_it(sqlite_url: str) -> None:
    from inhouse.data.external_read import read_external

    engine = get_engine(sqlite_url)
    _user_table(engine, 50)
    _register(engine)
    record = get_dataset(engine, "ev")
    whole = read_external(engine, record, split="train", after_id=None, up_to_id=None)
    parts = [
        read_external(
            engine, record, split="train", after_id=None, up_to_id=None, shard=(rank, 2)
        ).ids.tolist()
        for rank in range(2)
    ]
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == whole.ids.tolist()
