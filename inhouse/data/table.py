"""The data stream: one SQL table per data set plus a catalog describing each.

A row table ``ds_<name>`` has a monotonically increasing ``id`` (never reused: SQLite
``AUTOINCREMENT``, a PostgreSQL identity), the ``ingested_at`` time, a ``split``
(``train`` or ``test``; the test split is fixed when the set is created), the
features (tabular) or ``text``, the integer ``label`` and ``seq``, the row's place in commit
order (:mod:`inhouse.data.seal`: null until sealed after its commit). Tabular features are
stored in one of two columns: ``packed``, the compact form inhouse writes (little-endian
float32 or uint8 bytes, as the catalog's ``layout`` says: :mod:`inhouse.data.packed`), or
``features``, a JSON array of the feature values, for plain SQL. Other systems may append rows
with plain SQL INSERTs (``INSERT INTO ds_x (split, features, label) VALUES ('train', '[0.1,
2]', 1)``, leaving ``seq`` null); a row has one or the other, readers take both. The
coordinator consumes by ``seq``, so a transaction committing after one with a higher id is
never skipped. Row
tables are created with their data set (:func:`inhouse.data.store.create_dataset`), never by
the schema migrations, which leave them (and any other table of the database) alone.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from inhouse.db import Base, BigId
from inhouse.errors import InvalidInputError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,47}$")

ROW_TABLES = MetaData()
"""The row tables, apart from :class:`Base`'s: they are made by :func:`rows_table` users,
not by the migrations (which own only inhouse's own tables, the ``datasets`` catalog included)."""


def validate_name(name: str, *, what: str = "data set") -> str:
    """Refuse names that could escape a table or a directory (lowercase, digits, _)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidInputError(
            f"invalid {what} name {name!r}: use 1-48 chars of a-z, 0-9, _ starting with a letter"
        )
    return name


class DatasetRecord(Base):
    """Catalog entry: the shape and meaning of one data set."""

    __tablename__ = "datasets"

    name: Mapped[str] = mapped_column(String(48), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="tabular")
    n_features: Mapped[int] = mapped_column(Integer)
    feature_names: Mapped[list[str]] = mapped_column(JSON)
    class_names: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(Text, default="")
    layout: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, default=None)
    """How the row table stores features and what its import recorded (None: JSON features)."""
    source: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, default=None)
    """A user's table registered in place (None: inhouse's own ``ds_<name>`` table)."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


def rows_table(name: str) -> Table:
    """The row table of data set ``name`` (defined once per process, created on demand)."""
    validate_name(name)
    table_name = f"ds_{name}"
    existing = ROW_TABLES.tables.get(table_name)
    if existing is not None:
        return existing
    return Table(
        table_name,
        ROW_TABLES,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("ingested_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
        Column("split", String(8), nullable=False, server_default="train", index=True),
        Column("features", JSON, nullable=True),
        Column("packed", LargeBinary, nullable=True),
        Column("text", Text, nullable=True),
        Column("label", Integer, nullable=False),
        Column("seq", BigInteger, nullable=True),
        Index(f"ux_{table_name}_seq", "seq", unique=True),
        sqlite_autoincrement=True,
    )
