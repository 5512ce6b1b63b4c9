"""The metadata database: one SQLAlchemy engine per URL, one declarative base, shared column types.

SQLite (the embedded default) and PostgreSQL run the same code. Tables of every module
register on :class:`Base`; the schema itself is made and upgraded by Alembic migrations
(:mod:`inhouse.schema`, which opens engines with :func:`connect`). This module imports nothing
of inhouse above it, so every table module can use it. A SQLite file (training rows, the
audit log, token hashes) is created 0600, and tightened to it with a warning when found looser
(:func:`inhouse.private_paths.private_sqlite`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Dialect,
    Engine,
    Integer,
    TypeDecorator,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from inhouse.errors import UnavailableError
from inhouse.private_paths import private_sqlite

OWN_TABLES: frozenset[str] = frozenset(
    {
        "access_grants",
        "access_principals",
        "access_role_bindings",
        "access_tokens",
        "alembic_version",
        "audit_chain_head",
        "audit_log",
        "canary_traffic",
        "consumed_windows",
        "coordinator_canary",
        "coordinator_events",
        "coordinator_state",
        "datasets",
        "model_aliases",
        "model_versions",
        "privacy_budgets",
        "privacy_charges",
        "privacy_non_dp_runs",
    }
)
"""Every table of inhouse's own (the migrations' and Alembic's; a test keeps it equal to the
models): a layer that must refuse them (a registered data set's source) needs no model import."""


class Base(DeclarativeBase):
    """Declarative base shared by every inhouse table."""


BigId = BigInteger().with_variant(Integer(), "sqlite")
"""A 64-bit id that is still SQLite's ``INTEGER PRIMARY KEY`` (the rowid) there."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A DateTime that refuses naive values and always reads back aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: pass a timezone-aware UTC time")
        value = value.astimezone(timezone.utc)
        # SQLite has no time zone type; store naive UTC there.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the serving replicas read while a training job writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def connect(url: str) -> Engine:
    """The process-wide engine for ``url``, as it is: :func:`inhouse.schema.get_engine` is the
    one callers want (it also brings the schema up to date)."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            if url.startswith("sqlite"):
                private_sqlite(make_url(url).database or "")
                engine = create_engine(url, connect_args={"timeout": 30})
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(url, pool_pre_ping=True)
            _engines[url] = engine
        return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A transaction: commit on success, roll back on any exception."""
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except OperationalError as exc:  # unreachable, restarted or locked database: retryable
        with contextlib.suppress(Exception):
            session.rollback()
        reason = (str(exc.orig).strip().splitlines() or ["no reason given"])[0]
        raise UnavailableError(f"database unavailable: {reason}; retry") from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
