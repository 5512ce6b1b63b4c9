"""Compact feature storage: a row's features as one little-endian blob in column ``packed``.

A data set's ``layout["dtype"]`` says how (``float32``, the default, or ``uint8``, e.g. for
images, with ``layout["scale"]``: a stored byte ``b`` is the feature value ``b * scale``).
Every API speaks feature values: writers quantize (refusing a value off the uint8 grid), and
readers scale back. A row holds either ``packed`` or the JSON ``features`` a plain-SQL writer
filled (feature values, never scaled); readers take both. Tables made before ``packed``
existed get the column on their first write (``ALTER TABLE ... ADD COLUMN``).

The bulk writer and reader go to the driver directly (``executemany`` on SQLite, ``COPY``
on PostgreSQL, ``np.frombuffer`` over the joined blobs): 70,000 rows of 784 bytes read in
well under a second.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, LargeBinary, Table, inspect, text

from inhouse.errors import InvalidInputError

if TYPE_CHECKING:  # numpy is imported where it is used: opening a database stays fast
    import numpy as np

DTYPES = ("float32", "uint8")
INSERT_CHUNK = 50_000
_HAS_PACKED: set[tuple[str, str]] = set()  # (database URL, table) known to have the column


@dataclass(frozen=True)
class Packing:
    """How one data set's features are stored: element type, scale (uint8) and width."""

    dtype: str
    width: int
    scale: float = 1.0

    @classmethod
    def of(cls, layout: Mapping[str, Any] | None, width: int) -> Packing:
        """The packing a data set's ``layout`` describes (None: float32)."""
        layout = layout or {}
        dtype = str(layout.get("dtype", "float32"))
        if dtype not in DTYPES:
            raise InvalidInputError(f"layout dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        scale = float(layout.get("scale", 1.0))
        if not scale > 0:
            raise InvalidInputError(f"layout scale must be positive, not {scale}")
        return cls(dtype=dtype, width=width, scale=scale)

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        import numpy as np

        return np.dtype("<f4") if self.dtype == "float32" else np.dtype("u1")

    def encode(self, x: np.ndarray[Any, Any], *, where: str = "row") -> np.ndarray[Any, Any]:
        """Feature values ``x`` (n, width) as stored elements; refuses off-grid uint8 values."""
        import numpy as np

        values = np.asarray(x, dtype=np.float64).reshape(-1, self.width)
        bad = ~np.isfinite(values)
        if bad.any():
            row, column = np.argwhere(bad)[0]
            raise InvalidInputError(f"{where} {row}, feature {column}: not a finite number")
        if self.dtype == "float32":
            return values.astype("<f4")
        steps = values / self.scale
        rounded = np.rint(steps)
        bad = (np.abs(steps - rounded) > 1e-3) | (rounded < 0) | (rounded > 255)
        if bad.any():
            row, column = np.argwhere(bad)[0]
            raise InvalidInputError(
                f"{where} {row}, feature {column}: {values[row, column]!r} is not a multiple "
                f"0..255 of the uint8 data set's scale {self.scale}"
            )
        return rounded.astype("u1")

    def blobs(self, stored: np.ndarray[Any, Any]) -> list[bytes]:
        """One blob per row of stored elements (from :meth:`encode`)."""
        raw = stored.astype(self.numpy_dtype, copy=False).tobytes()
        step = self.width * self.numpy_dtype.itemsize
        return [raw[i : i + step] for i in range(0, len(raw), step)]

    def decode(self, joined: bytes, n: int) -> np.ndarray[Any, Any]:
        """``n`` rows of joined blobs as float32 feature values (n, width)."""
        import numpy as np

        size = n * self.width * self.numpy_dtype.itemsize
        if len(joined) != size:
            raise InvalidInputError(
                f"packed features hold {len(joined)} bytes for {n} rows; expected {size} "
                f"({self.width} {self.dtype} each): a row was written with another width"
            )
        stored = np.frombuffer(joined, dtype=self.numpy_dtype).reshape(n, self.width)
        if self.dtype == "float32":
            return stored.astype(np.float32)  # a writable copy: torch wants one
        values = stored.astype(np.float32)
        if self.scale != 1.0:
            values *= np.float32(self.scale)
        return values


def _key(conn: Connection, table: Table) -> tuple[str, str]:
    return (conn.engine.url.render_as_string(hide_password=True), table.name)


def has_packed(conn: Connection, table: Table) -> bool:
    """Whether ``table`` in the database has the ``packed`` column (made before it: no)."""
    key = _key(conn, table)
    if key in _HAS_PACKED:
        return True
    names = {c["name"] for c in inspect(conn).get_columns(table.name)}
    if "packed" in names:
        _HAS_PACKED.add(key)
    return "packed" in names


def ensure_packed(conn: Connection, table: Table) -> None:
    """Add the ``packed`` column to a table made before it existed (inside the caller's
    transaction)."""
    if has_packed(conn, table):
        return
    kind = LargeBinary().compile(dialect=conn.dialect)
    guard = " IF NOT EXISTS" if conn.dialect.name == "postgresql" else ""
    conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN{guard} packed {kind}'))
    _HAS_PACKED.add(_key(conn, table))


def insert_packed(
    conn: Connection,
    table: Table,
    *,
    blobs: Sequence[bytes],
    labels: Sequence[int],
    splits: Sequence[str],
) -> None:
    """Insert rows of packed features in the caller's transaction (COPY on PostgreSQL)."""
    ensure_packed(conn, table)
    rows = list(zip(splits, blobs, labels, strict=True))
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        if raw is not None and hasattr(raw, "cursor") and conn.dialect.driver == "psycopg":
            with raw.cursor() as cursor:
                sql = f'COPY "{table.name}" (split, packed, label) FROM STDIN (FORMAT BINARY)'
                with cursor.copy(sql) as copy:
                    copy.set_types(["varchar", "bytea", "int4"])
                    for item in rows:
                        copy.write_row(item)
            return
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = f'INSERT INTO "{table.name}" (split, packed, label) VALUES ({marker}, {marker}, {marker})'
    for start in range(0, len(rows), INSERT_CHUNK):
        conn.exec_driver_sql(sql, rows[start : start + INSERT_CHUNK])


def json_features(value: object) -> list[float]:
    """A JSON ``features`` cell as read by the driver (a string on SQLite, parsed elsewhere)."""
    if isinstance(value, str | bytes):
        value = json.loads(value)
    if not isinstance(value, list):
        raise InvalidInputError(f"a row's JSON features are {type(value).__name__}, not a list")
    return [float(v) for v in value]


def read_features(
    conn: Connection, table: Table, packing: Packing, query: Any
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Run ``query`` (selecting id, label, packed, features-as-text) and return ``(ids,
    labels, x)``: packed rows decoded in one ``np.frombuffer``, JSON rows parsed one by one."""
    import numpy as np

    result = conn.execute(query).all()
    n, width = len(result), packing.width
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), np.zeros((0, width), dtype=np.float32)
    ids, labels, blobs, cells = zip(*result, strict=True)
    missing = [i for i, blob in enumerate(blobs) if blob is None]
    if not missing:
        x = packing.decode(b"".join(blobs), n)
    else:
        x = np.empty((n, width), dtype=np.float32)
        present = [i for i, blob in enumerate(blobs) if blob is not None]
        if present:
            x[present] = packing.decode(b"".join(blobs[i] for i in present), len(present))
        for i in missing:
            values = json_features(cells[i])
            if len(values) != width:
                raise InvalidInputError(
                    f"{table.name} row id {ids[i]}: {len(values)} JSON features, expected {width}"
                )
            x[i] = values
    return np.array(ids, dtype=np.int64), np.array(labels, dtype=np.int64), x
