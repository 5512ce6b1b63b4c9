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
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, LargeBinary, Table, Text, cast, inspect, null, text

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
            return np.ascontiguousarray(values, dtype="<f4")
        steps = values / self.scale
        rounded = np.rint(steps)
        bad = (np.abs(steps - rounded) > 1e-3) | (rounded < 0) | (rounded > 255)
        if bad.any():
            row, column = np.argwhere(bad)[0]
            raise InvalidInputError(
                f"{where} {row}, feature {column}: {float(values[row, column])} is not a multiple "
                f"0..255 of the uint8 data set's scale {self.scale}"
            )
        return np.ascontiguousarray(rounded, dtype="u1")

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
    first_seq: int,
) -> None:
    """Insert rows of packed features in the caller's transaction (COPY on PostgreSQL),
    numbered ``first_seq, first_seq + 1, ...`` in commit order (the caller holds the sealer
    lock: :func:`inhouse.data.seal.reserve_seqs`)."""
    ensure_packed(conn, table)
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        raw: Any = conn.connection.driver_connection
        sql = f'COPY "{table.name}" (split, packed, label, seq) FROM STDIN (FORMAT BINARY)'
        with raw.cursor() as cursor, cursor.copy(sql) as copy:
            copy.write(_COPY_HEADER)
            for start in range(0, len(blobs), INSERT_CHUNK):
                end = start + INSERT_CHUNK
                chunk = (splits[start:end], blobs[start:end], labels[start:end])
                copy.write(_copy_rows(*chunk, first_seq=first_seq + start))
            copy.write(struct.pack(">h", -1))
        return
    seqs = range(first_seq, first_seq + len(blobs))
    rows = list(zip(splits, blobs, labels, seqs, strict=True))
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    values = ", ".join([marker] * 4)
    sql = f'INSERT INTO "{table.name}" (split, packed, label, seq) VALUES ({values})'
    for start in range(0, len(rows), INSERT_CHUNK):
        conn.exec_driver_sql(sql, rows[start : start + INSERT_CHUNK])


def insert_feature_rows(
    conn: Connection,
    table: Table,
    packing: Packing,
    rows: Sequence[Mapping[str, Any]],
    *,
    first_seq: int,
) -> None:
    """Insert validated rows (``features`` values, ``label``, ``split``) packed, numbered from
    ``first_seq``."""
    import numpy as np

    stored = packing.encode(np.array([row["features"] for row in rows]), where="row")
    insert_packed(
        conn,
        table,
        blobs=packing.blobs(stored),
        labels=[int(row["label"]) for row in rows],
        splits=[str(row.get("split", "train")) for row in rows],
        first_seq=first_seq,
    )


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)


def _copy_rows(
    splits: Sequence[str], blobs: Sequence[bytes], labels: Sequence[int], *, first_seq: int
) -> bytes:
    """Rows in PostgreSQL's binary COPY format: (varchar split, bytea packed, int4 label,
    int8 seq)."""
    import numpy as np

    if not len(splits) == len(blobs) == len(labels):
        raise InvalidInputError("as many splits, feature rows and labels are needed")
    label_bytes = np.asarray(labels, dtype=">i4").tobytes()
    seq_bytes = np.arange(first_seq, first_seq + len(labels), dtype=">i8").tobytes()
    prefixes: dict[tuple[str, int], bytes] = {}
    parts: list[bytes] = []
    for i, (split, blob) in enumerate(zip(splits, blobs, strict=True)):
        key = (split, len(blob))
        prefix = prefixes.get(key)
        if prefix is None:
            text = split.encode()
            prefix = struct.pack(">hi", 4, len(text)) + text + struct.pack(">i", len(blob))
            prefixes[key] = prefix
        label, seq = label_bytes[4 * i : 4 * i + 4], seq_bytes[8 * i : 8 * i + 8]
        parts += (prefix, blob, _FOUR, label, _EIGHT, seq)
    return b"".join(parts)


_FOUR = struct.pack(">i", 4)
_EIGHT = struct.pack(">i", 8)


def json_features(value: object) -> list[float]:
    """A JSON ``features`` cell as read by the driver (a string on SQLite, parsed elsewhere)."""
    if isinstance(value, str | bytes):
        value = json.loads(value)
    if value is None:
        raise InvalidInputError("a row holds neither packed nor JSON features")
    if not isinstance(value, list):
        raise InvalidInputError(f"a row's JSON features are {type(value).__name__}, not a list")
    return [float(v) for v in value]


def _fetch(conn: Connection, query: Any) -> list[tuple[Any, ...]]:
    """All rows of ``query`` as plain tuples from the driver's cursor (SQLAlchemy's Row
    objects cost more than the database for a million rows); binary results on psycopg."""
    compiled = query.compile(dialect=conn.dialect)
    if conn.dialect.positional:
        params: Any = tuple(compiled.params[key] for key in compiled.positiontup or ())
    else:
        params = compiled.params
    raw: Any = conn.connection.dbapi_connection
    binary = {"binary": True} if conn.dialect.driver == "psycopg" else {}
    cursor = raw.cursor(**binary)
    try:
        cursor.execute(str(compiled), params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def read_features(
    conn: Connection, table: Table, packing: Packing, query: Any, *, packed: bool = True
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Rows of ``query`` (a window of ``table`` selecting nothing yet) as ``(seqs, labels, x)``:
    the row numbers are the commit-order ``seq`` every window and watermark counts in.

    Packed rows are decoded in one ``np.frombuffer``; rows that hold JSON ``features`` (plain
    SQL appends, or a table without ``packed``) are read by a second query and parsed.
    """
    import numpy as np

    width = packing.width
    blob = table.c.packed if packed else null()
    result = _fetch(conn, query.add_columns(table.c.seq, table.c.label, blob))
    n = len(result)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), np.zeros((0, width), dtype=np.float32)
    ids = np.fromiter(map(itemgetter(0), result), np.int64, n)
    labels = np.fromiter(map(itemgetter(1), result), np.int64, n)
    blobs = list(map(itemgetter(2), result))
    del result
    if None not in blobs:
        return ids, labels, packing.decode(b"".join(blobs), n)
    x = np.empty((n, width), dtype=np.float32)
    present = [i for i, item in enumerate(blobs) if item is not None]
    if present:
        x[present] = packing.decode(b"".join(blobs[i] for i in present), len(present))
    where = query.add_columns(table.c.seq, cast(table.c.features, Text))
    if packed:
        where = where.where(table.c.packed.is_(None))
    cells = dict(_fetch(conn, where))
    for i in (i for i, item in enumerate(blobs) if item is None):
        values = json_features(cells.get(int(ids[i])))
        if len(values) != width:
            raise InvalidInputError(
                f"{table.name} row seq {ids[i]}: {len(values)} JSON features, expected {width}"
            )
        x[i] = values
    return ids, labels, x
