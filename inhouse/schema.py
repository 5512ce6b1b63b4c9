"""The metadata database at the current schema: Alembic migrations, run on start.

:func:`get_engine` is how every layer (CLI, jobs, actors, Serve replicas) opens the database.
The first time a process opens one, :func:`upgrade` brings it to :data:`HEAD`:

- an up-to-date database costs one query (``alembic_version``), and nothing after that in the
  same process;
- a fresh database gets every table from the migrations in ``inhouse/migrations/versions``;
- a database made before migrations (inhouse's tables, no ``alembic_version``) is adopted:
  revision ``0001`` makes whatever table is missing and stamps it, later revisions then run.

Processes that start at once (replicas, jobs) take turns: on PostgreSQL a transaction-scoped
advisory lock per schema, on SQLite the database's write lock (``BEGIN IMMEDIATE``, waiting up
to the busy timeout); the later one finds the database up to date. Only inhouse's own tables
are migrated and compared (:func:`include_name`): data-set row tables (``ds_*``) and users'
tables in the same database are left alone.
"""

from __future__ import annotations

import logging
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, MetaData, inspect, text
from sqlalchemy.exc import OperationalError

from inhouse.db import Base, connect
from inhouse.errors import InhouseError, UnavailableError

if TYPE_CHECKING:
    from alembic.config import Config

HEAD = "0003"
"""The newest revision in ``migrations/versions`` (a test keeps the two equal)."""
SCRIPTS = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x1A7D38B  # first key of the advisory lock; the second is the schema's hash
_migrated: weakref.WeakSet[Engine] = weakref.WeakSet()
_lock = threading.Lock()
_log = logging.getLogger(__name__)


def get_engine(url: str) -> Engine:
    """The process-wide engine for ``url``, its schema brought up to date on first use.

    Raises:
        UnavailableError: the database cannot be reached (retry).
        InhouseError: the database was migrated by a newer inhouse than this one.
    """
    engine = connect(url)
    upgrade(engine)
    return engine


def upgrade(engine: Engine) -> None:
    """Bring ``engine``'s database to :data:`HEAD` (checked once per engine and process)."""
    if engine in _migrated:
        return
    with _lock:
        if engine in _migrated:
            return
        try:
            if current_revision(engine) != HEAD:
                _migrate(engine)
        except OperationalError as exc:
            raise UnavailableError(f"database {engine.url!r} is unreachable: {exc.orig}") from exc
        _migrated.add(engine)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is stamped at; None when it never was (fresh or older)."""
    with engine.connect() as conn:
        return _stamped(conn)


def _migrate(engine: Engine) -> None:
    from alembic import command
    from alembic.util import CommandError

    with engine.connect() as conn:
        _take_lock(conn)
        tables = [t for t in inspect(conn).get_table_names() if not t.startswith("ds_")]
        before = _stamped(conn)
        try:
            command.upgrade(alembic_config(connection=conn), "head")
        except CommandError as exc:
            raise InhouseError(
                f"cannot bring database {engine.url!r} to schema {HEAD}: {exc}; was it "
                "migrated by a newer inhouse? Upgrade inhouse"
            ) from exc
        conn.commit()
    if before is None and tables:  # made by create_all before migrations (or users' tables)
        _log.info("adopted a database of %d tables made before migrations at %s", len(tables), HEAD)
    elif before != HEAD:
        _log.info("database schema migrated from %s to %s", before or "nothing", HEAD)


def _take_lock(conn: Connection) -> None:
    """Hold the migration lock until ``conn``'s transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:key, hashtext(current_schema()))"),
            {"key": _LOCK_KEY},
        )
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, queued by busy_timeout


def _stamped(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    found = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if found is None else str(found)


def alembic_config(
    *,
    connection: Connection | None = None,
    url: str | None = None,
    metadata: MetaData | None = None,
) -> Config:
    """An Alembic configuration of inhouse's migrations, without an ``alembic.ini``.

    Args:
        connection: run on this connection (in its transaction) rather than a new one.
        url: the database of the ``alembic`` commands that open their own connection.
        metadata: the tables to compare against
            (:func:`inhouse.migrations.metadata.model_metadata`), for ``compare_metadata`` and
            ``command.revision(config, autogenerate=True, message=...)``.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    if metadata is not None:
        config.attributes["target_metadata"] = metadata
    return config


def include_name(name: str | None, type_: str, _parents: Any) -> bool:
    """Alembic's filter: compare and generate inhouse's own tables only, never data-set row
    tables (``ds_*``) nor other tables that share the database."""
    if type_ != "table":
        return True
    return name is not None and name in Base.metadata.tables and not name.startswith("ds_")
