"""Registered tables: a user's existing table or view, used in place as a data set.

``inhouse data register --table T --key id_col --label y`` records a catalog entry whose
``source`` names the table (optionally ``schema.table``, in inhouse's database), its integer
key, label, optional time column and feature columns. inhouse only ever SELECTs from it: the
rows are never copied, and the database role needs no more than SELECT on it.

The contract (stated in ``--help`` and docs/data.md, checked by :mod:`inhouse.data.consumed`):
rows are appended with a unique, increasing integer key and never updated or deleted once
consumed. Keys need not arrive in commit order: the stream numbers each key when it is first
seen (``seq``) in a small key map inhouse owns (``dsk_<name>``: key and seq only), sealed like
inhouse's own tables (:mod:`inhouse.data.seal`), so a row committed late is never skipped.

The held-out split is deterministic from the key: a row is a test row when
``splitmix64(key) / 2**64 < test_fraction`` (:func:`inhouse.data.external_read.test_mask`).
Labels are mapped to classes by ``label_values`` (the class's name, or its index 0..k-1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    MetaData,
    Table,
    exists,
    func,
    insert,
    select,
)
from sqlalchemy import column as sql_column
from sqlalchemy import table as sql_table
from sqlalchemy.exc import NoSuchTableError

from inhouse.data.seal import lock_sealer
from inhouse.data.table import DatasetRecord, validate_name
from inhouse.db import OWN_TABLES
from inhouse.errors import ConflictError, InvalidInputError

KEY_MAPS = MetaData()
"""The key maps of registered tables (made at registration, like row tables)."""
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
MAX_CLASSES = 1000


def key_map(name: str) -> Table:
    """The key map of registered data set ``name``: each key's ``seq`` in first-seen order."""
    table_name = f"dsk_{validate_name(name)}"
    existing = KEY_MAPS.tables.get(table_name)
    if existing is not None:
        return existing
    return Table(
        table_name,
        KEY_MAPS,
        Column("key", BigInteger, primary_key=True, autoincrement=False),
        Column("seq", BigInteger, nullable=False),
        Index(f"ux_{table_name}_seq", "seq", unique=True),
    )


def _identifier(value: str, what: str) -> str:
    if not IDENTIFIER.fullmatch(value or ""):
        raise InvalidInputError(
            f"invalid {what} {value!r}: use letters, digits and _ (a SQL identifier)"
        )
    return value


def split_table_name(table: str) -> tuple[str | None, str]:
    """``"schema.table"`` or ``"table"`` as ``(schema, table)``, each a plain identifier."""
    parts = table.split(".")
    if len(parts) > 2:
        raise InvalidInputError(f"invalid table {table!r}: use TABLE or SCHEMA.TABLE")
    names = [_identifier(p, "table name") for p in parts]
    return (names[0], names[1]) if len(names) == 2 else (None, names[0])


def _inhouse_table(table_name: str) -> bool:
    """inhouse's own tables (in any schema): never a data set's source (tokens, audit, ...)."""
    lowered = table_name.lower()
    return lowered in OWN_TABLES or lowered.startswith(("ds_", "dsk_"))


def source_table(source: dict[str, Any]) -> Any:
    """A lightweight, quoted handle on the registered table's columns (never created)."""
    names = [source["key"], source["label"], *source["features"]]
    if source.get("time"):
        names.append(source["time"])
    return sql_table(
        source["table"], *[sql_column(n) for n in dict.fromkeys(names)], schema=source["schema"]
    )


def _numeric(column: Column[Any]) -> bool:
    try:
        kind = column.type.python_type
    except NotImplementedError:
        return False
    return kind is not bool and kind in (int, float) or kind.__name__ == "Decimal"


def _label_values(
    conn: Connection, src: Any, source: dict[str, Any], classes: Sequence[str]
) -> tuple[list[Any], list[str]]:
    """The label values in class order, and the class names (``--classes`` or the values)."""
    label = src.c[source["label"]]
    found = list(
        conn.execute(
            select(label).where(label.is_not(None)).distinct().order_by(label).limit(MAX_CLASSES)
        ).scalars()
    )
    odd = [v for v in found if isinstance(v, bool) or not isinstance(v, int | str)]
    if odd:
        raise InvalidInputError(
            f"column {source['label']!r} of {source['table']!r} holds {odd[0]!r}: a label must "
            "be an integer class index or a class name (text)"
        )
    if classes:
        values: list[Any] = (
            list(range(len(classes))) if all(isinstance(v, int) for v in found) else list(classes)
        )
        names = list(classes)
    else:
        values, names = found, [str(v) for v in found]
    stray = [v for v in found if v not in values]
    if stray:
        raise InvalidInputError(
            f"column {source['label']!r} of {source['table']!r} holds {stray[0]!r}, not one of the "
            f"classes {names}; pass --classes with every class, in order"
        )
    if len(names) < 2:
        raise InvalidInputError(
            f"column {source['label']!r} of {source['table']!r} needs at least two classes"
        )
    return values, names


def register_table(
    engine: Engine,
    *,
    name: str,
    table: str,
    key: str,
    label: str,
    time: str | None = None,
    features: Sequence[str] = (),
    classes: Sequence[str] = (),
    test_fraction: float = 0.2,
    description: str = "",
) -> None:
    """Register ``table`` (read in place, never copied) as the tabular data set ``name``."""
    validate_name(name)
    schema, table_name = split_table_name(table)
    for value, what in ((key, "key column"), (label, "label column")):
        _identifier(value, what)
    if time is not None:
        _identifier(time, "time column")
    if not 0.0 <= test_fraction < 1.0:
        raise InvalidInputError(f"test fraction must be in [0, 1), not {test_fraction}")
    where = f"{schema}.{table_name}" if schema else table_name
    if _inhouse_table(table_name):
        raise InvalidInputError(
            f"table {where!r} is one of inhouse's own tables; register your own table or view"
        )
    with engine.begin() as conn:
        try:
            reflected = Table(table_name, MetaData(), schema=schema, autoload_with=conn)
        except NoSuchTableError:
            raise InvalidInputError(f"table or view {where!r} not found in the database") from None
        columns = {c.name: c for c in reflected.columns}
        used = [key, label, *features] + ([time] if time else [])
        missing = [c for c in used if c not in columns]
        if missing:
            raise InvalidInputError(f"table {where!r} has no column {missing[0]!r}")
        if not _numeric(columns[key]) or columns[key].type.python_type is not int:
            raise InvalidInputError(f"key column {key!r} of {where!r} must hold integers")
        skip = {key, label, time}
        chosen = list(features) or [c for c in columns if c not in skip and _numeric(columns[c])]
        bad = [c for c in chosen if not _numeric(columns[c])]
        if bad or not chosen:
            what = f"column {bad[0]!r} is not numeric" if bad else "no numeric feature columns"
            raise InvalidInputError(f"table {where!r}: {what}; pass --features")
        source: dict[str, Any] = {
            "table": table_name,
            "schema": schema,
            "key": key,
            "label": label,
            "time": time,
            "features": chosen,
            "test_fraction": test_fraction,
        }
        src = source_table(source)
        total, distinct = conn.execute(
            select(func.count(), func.count(func.distinct(src.c[key])))
        ).one()
        if total != distinct:
            raise InvalidInputError(
                f"key column {key!r} of {where!r} is not unique or holds nulls "
                f"({total} rows, {distinct} distinct keys)"
            )
        values, class_names = _label_values(conn, src, source, classes)
        source["label_values"] = values
        if conn.execute(select(DatasetRecord.name).where(DatasetRecord.name == name)).first():
            raise ConflictError(f"data set {name!r} already exists")
        key_map(name).create(conn, checkfirst=True)
        conn.execute(
            insert(DatasetRecord),
            {
                "name": name,
                "kind": "tabular",
                "n_features": len(chosen),
                "feature_names": chosen,
                "class_names": class_names,
                "description": description or f"registered table {where}",
                "source": source,
            },
        )
        seal_keys(conn, name, source)


def seal_keys(conn: Connection, name: str, source: dict[str, Any]) -> int:
    """Number the keys of ``source`` not seen before, in key order, after the last ``seq``;
    inside the caller's transaction, under the sealer lock. Returns how many."""
    keys = key_map(name)
    lock_sealer(conn, keys.name)
    src = source_table(source)
    column = src.c[source["key"]]
    fresh = (
        select(column.label("k"))
        .where(column.is_not(None), ~exists().where(keys.c.key == column))
        .distinct()
        .subquery()
    )
    base = select(func.coalesce(func.max(keys.c.seq), 0)).scalar_subquery()
    numbered = select(fresh.c.k, base + func.row_number().over(order_by=fresh.c.k))
    result = conn.execute(insert(keys).from_select(["key", "seq"], numbered))
    return int(result.rowcount or 0)


def seal_registered(engine: Engine, name: str, source: dict[str, Any]) -> int:
    """Seal the keys that arrived in a registered table since the last look (a read-only
    probe when none did)."""
    keys = key_map(name)
    column = source_table(source).c[source["key"]]
    probe = select(column).where(column.is_not(None), ~exists().where(keys.c.key == column))
    with engine.connect() as conn:
        if conn.execute(probe.limit(1)).first() is None:
            return 0
    with engine.begin() as conn:
        return seal_keys(conn, name, source)
