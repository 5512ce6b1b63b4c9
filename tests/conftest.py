"""Shared fixtures: databases (SQLite file, PostgreSQL schema) and marker handling."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BASE = os.environ.get("INHOUSE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _has_gpu() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the session."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    schema = f"ih_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_BASE)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_BASE} is required for integration tests: {exc}")
    yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test against the embedded SQLite and the local PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    request.getfixturevalue("pg_url")  # fails clearly if PostgreSQL is not running
    # A schema per test keeps tables (ds_digits, model_versions...) independent.
    from sqlalchemy import create_engine, text

    schema = f"ih_t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    request.addfinalizer(lambda: _drop(admin, schema))
    return f"{PG_BASE}?options=-csearch_path%3D{schema}"


def _drop(admin: object, schema: str) -> None:
    from sqlalchemy import text

    from inhouse import db

    for url in [u for u in db._engines if schema in u]:
        db._engines.pop(url).dispose()
    with admin.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
