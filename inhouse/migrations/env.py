"""Alembic's environment: run the migrations on the connection :mod:`inhouse.schema` passes.

:func:`inhouse.schema.upgrade` hands over a connection that already holds the migration lock
and its transaction (``config.attributes["connection"]``); :func:`inhouse.schema.
alembic_config` with ``metadata=model_metadata()`` (:mod:`inhouse.migrations.metadata`) adds
the tables' metadata for ``compare_metadata`` and ``alembic revision --autogenerate``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from inhouse.schema import include_name

config = context.config
metadata = config.attributes.get("target_metadata")


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_name=include_name,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        include_name=include_name,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
elif (given := config.attributes.get("connection")) is not None:
    _run(given)
else:  # the alembic command line, with sqlalchemy.url set
    engine = create_engine(str(config.get_main_option("sqlalchemy.url")))
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()
