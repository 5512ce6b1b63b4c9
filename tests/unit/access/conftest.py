"""Fixtures for the access-control tests: a fresh SQLite file per test and a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from inhouse.access import ACCESS_TABLES, AccessService
from inhouse.db import Base

PEPPER = b"p" * 32


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "meta.db"


@pytest.fixture
def engine(db_path: Path) -> Iterator[Engine]:
    eng = create_engine(f"sqlite:///{db_path}", connect_args={"timeout": 10})
    Base.metadata.create_all(eng, tables=ACCESS_TABLES)
    yield eng
    eng.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(engine: Engine, clock: FakeClock) -> AccessService:
    return AccessService(engine=engine, pepper=PEPPER, clock=clock)
