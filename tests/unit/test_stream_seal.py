"""The stream watermark never skips a row: ``seq`` follows commit order, not id order."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine, func, insert, select, text

from inhouse.data import append_rows, create_dataset, describe, read_rows
from inhouse.data.store import insert_rows
from inhouse.data.stream import StreamPosition, position
from inhouse.data.table import rows_table
from inhouse.schema import get_engine
from tests.polling import wait_for


def _dataset(engine: object, name: str = "s") -> None:
    create_dataset(engine, name=name, feature_names=["a"], class_names=["x", "y"])  # type: ignore[arg-type]


@pytest.mark.integration
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_transaction_committing_after_a_higher_id_is_not_skipped(db_url: str) -> None:
    engine = get_engine(db_url)
    _dataset(engine)
    table = rows_table("s")
    slow, fast = engine.connect(), engine.connect()
    try:
        slow_tx = slow.begin()
        slow.execute(insert(table), [{"features": [1.0], "label": 0}])  # takes id 1
        with fast.begin():
            fast.execute(insert(table), [{"features": [2.0], "label": 1}])  # id 2, commits first
        first = position(engine, "s", after_id=0)
        assert first.max_row_id == 1 and first.new_train_rows == 1
        watermark = first.max_row_id  # a retrain consumes (0, 1]: only row id 2
        consumed = read_rows(engine, "s", split="train", up_to_id=watermark)
        assert consumed.x.tolist() == [[2.0]]
        with engine.connect() as conn:  # what the old max(id) watermark would have said
            assert conn.execute(select(func.max(table.c.id))).scalar() == 2
        slow_tx.commit()  # id 1 commits last
    finally:
        slow.close()
        fast.close()
    later = position(engine, "s", after_id=watermark)
    assert later.max_row_id == 2 and later.new_train_rows == 1
    fresh = read_rows(engine, "s", split="train", after_id=watermark)
    assert fresh.x.tolist() == [[1.0]] and fresh.ids.tolist() == [2]
    with engine.connect() as conn:
        pairs = conn.execute(select(table.c.id, table.c.seq).order_by(table.c.seq)).all()
    assert [tuple(p) for p in pairs] == [(2, 1), (1, 2)]


def test_sealing_numbers_in_commit_order_and_never_renumbers(db_url: str) -> None:
    engine = get_engine(db_url)
    _dataset(engine)
    first, last = append_rows(engine, "s", features=[[1.0], [2.0]], labels=[0, 1])
    assert (first, last) == (1, 2)
    with engine.begin() as conn:  # another system's plain INSERT: unsealed until inhouse looks
        conn.execute(insert(rows_table("s")), [{"features": [3.0], "label": 0}])
    assert read_rows(engine, "s").ids.tolist() == [1, 2]
    info = describe(engine, "s")
    assert (info.first_id, info.last_id, info.rows) == (1, 3, 3)
    assert read_rows(engine, "s", after_id=2).x.tolist() == [[3.0]]
    again = append_rows(engine, "s", features=[[4.0]], labels=[1])
    assert again == (4, 4)
    assert position(engine, "s", after_id=3).new_train_rows == 1


@pytest.mark.integration
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_poll_waits_for_a_writer_holding_the_sealer_lock(db_url: str) -> None:
    """An inhouse writer numbers its rows under the advisory lock; a poll sealing another
    system's row meanwhile waits for it, then numbers that row after the writer's."""
    engine = get_engine(db_url)
    _dataset(engine)
    writer = engine.connect()
    try:
        tx = writer.begin()
        assert insert_rows(writer, "s", [{"features": [1.0], "label": 0, "split": "train"}]) == (
            1,
            1,
        )
        with engine.begin() as conn:  # another system's row commits first
            conn.execute(insert(rows_table("s")), [{"features": [2.0], "label": 1}])
        seen: list[StreamPosition] = []
        poll = threading.Thread(target=lambda: seen.append(position(engine, "s", after_id=0)))
        poll.start()
        wait_for(lambda: _waiting_on_advisory_lock(engine), what="the poll to wait for the lock")
        tx.commit()
    finally:
        writer.close()
    poll.join(timeout=30)
    assert seen and (seen[0].max_row_id, seen[0].new_train_rows) == (2, 2)
    assert read_rows(engine, "s").x.tolist() == [[1.0], [2.0]]


def _waiting_on_advisory_lock(engine: Engine) -> bool:
    with engine.connect() as conn:
        query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        return bool(conn.execute(text(query)).scalar())
