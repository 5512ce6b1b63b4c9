"""The metadata database: one SQLAlchemy engine per URL, one declarative base for every table.

SQLite (the embedded default) and PostgreSQL run the same code. Tables of every module
register on :class:`Base`; :func:`create_all` makes whatever is missing (idempotent). A SQLite
file (training rows, the audit log, token hashes) is created 0600, and tightened to it with a
warning when found looser (:func:`inhouse.private_paths.private_sqlite`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from inhouse.errors import UnavailableError
from inhouse.private_paths import private_sqlite


class Base(DeclarativeBase):
    """Declarative base shared by every inhouse table."""


_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the serving replicas read while a training job writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def get_engine(url: str) -> Engine:
    """Return the process-wide engine for ``url``, creating tables on first use."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            if url.startswith("sqlite"):
                private_sqlite(make_url(url).database or "")
                engine = create_engine(url, connect_args={"timeout": 30})
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(url, pool_pre_ping=True)
            create_all(engine)
            _engines[url] = engine
        return engine


def create_all(engine: Engine) -> None:
    """Create every registered table that does not exist yet."""
    # Import the modules that define tables so they are registered on Base.
    import inhouse.access.records  # noqa: F401
    import inhouse.coordinator.state  # noqa: F401
    import inhouse.data.table  # noqa: F401
    import inhouse.privacy.records  # noqa: F401
    import inhouse.registry.records  # noqa: F401

    try:
        Base.metadata.create_all(engine)
    except OperationalError as exc:
        raise UnavailableError(f"database {engine.url!r} is unreachable: {exc.orig}") from exc


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
