"""The data layer against SQLite and PostgreSQL: seeding, appending, reading ranges."""

from __future__ import annotations

import pytest
import torch
from sqlalchemy import insert

from inhouse.data import append_rows, describe, read_rows, seed
from inhouse.data.table import rows_table
from inhouse.errors import DatasetNotFoundError, InvalidInputError
from inhouse.schema import get_engine


def test_seed_digits_is_idempotent_with_a_fixed_test_split(db_url: str) -> None:
    engine = get_engine(db_url)
    info, created = seed(engine, "digits")
    assert created and info.rows == 1797 and info.n_features == 64
    assert info.test_rows == 360 and info.train_rows == 1437
    again, created_again = seed(engine, "digits")
    assert not created_again and again.rows == 1797
    test = read_rows(engine, "digits", split="test")
    assert test.x.shape == (360, 64) and test.x.dtype == torch.float32
    assert sorted(set(test.y.tolist())) == list(range(10))  # stratified


def test_append_gives_increasing_ids_and_ranges_read_back(db_url: str) -> None:
    engine = get_engine(db_url)
    info, _ = seed(engine, "breast_cancer")
    first, last = append_rows(engine, "breast_cancer", features=[[1.0] * 30] * 3, labels=[0, 1, 0])
    assert first == info.last_id + 1 and last == first + 2
    tail = read_rows(engine, "breast_cancer", after_id=info.last_id)
    assert tail.ids.tolist() == [first, first + 1, first + 2]
    assert tail.y.tolist() == [0, 1, 0]
    window = read_rows(engine, "breast_cancer", after_id=first, up_to_id=first + 1)
    assert window.ids.tolist() == [first + 1]


def test_plain_sql_inserts_from_other_systems_count(db_url: str) -> None:
    engine = get_engine(db_url)
    info, _ = seed(engine, "digits")
    with engine.begin() as conn:
        conn.execute(insert(rows_table("digits")), [{"features": [0.0] * 64, "label": 3}])
    after = describe(engine, "digits")
    assert after.rows == info.rows + 1 and after.last_id == info.last_id + 1


@pytest.mark.parametrize(
    ("features", "labels", "message"),
    [
        ([[1.0] * 29], [0], "expected 30 features"),
        ([[float("nan")] * 30], [0], "finite"),
        ([[1.0] * 30], [5], "outside 0..1"),
        ([[1.0] * 30], [0, 1], "labels"),
    ],
)
def test_bad_rows_are_refused_and_nothing_is_written(
    sqlite_url: str, features: list[list[float]], labels: list[int], message: str
) -> None:
    engine = get_engine(sqlite_url)
    info, _ = seed(engine, "breast_cancer")
    with pytest.raises(InvalidInputError, match=message):
        append_rows(engine, "breast_cancer", features=features, labels=labels)
    assert describe(engine, "breast_cancer").rows == info.rows


@pytest.mark.parametrize("name", ["../etc", "Digits", "x;drop table", "", "a" * 49])
def test_hostile_names_are_refused(sqlite_url: str, name: str) -> None:
    with pytest.raises(InvalidInputError):
        read_rows(get_engine(sqlite_url), name)


def test_unknown_data_set(sqlite_url: str) -> None:
    with pytest.raises(DatasetNotFoundError, match="inhouse data seed"):
        describe(get_engine(sqlite_url), "nothing_here")
