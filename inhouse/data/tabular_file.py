"""Reading a user's tabular file (CSV or Parquet) into an Arrow table, through ``pyarrow.fs``.

The file is named by a URI: a local path, or ``s3://bucket/key`` on object storage
(:func:`inhouse.storage.filesystem_for` gives the filesystem). Every
error is one line naming the file, and where the fault lies in it the line (CSV) or row
(Parquet) and the column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inhouse.errors import InvalidInputError, UnavailableError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

MAX_IMPORT_BYTES = 4 << 30
FORMATS = ("csv", "parquet")
_CSV_PARSE = re.compile(r"Expected (\d+) columns, got (\d+): (.*)", re.S)


@dataclass(frozen=True)
class TabularFile:
    """An Arrow table read from ``uri``, and how to name one of its rows in a message."""

    uri: str
    format: str
    table: pa.Table

    def where(self, index: int, column: str | None = None) -> str:
        """``FILE line N, column C`` (CSV: the header is line 1) or ``FILE row N`` (Parquet)."""
        place = f"line {index + 2}" if self.format == "csv" else f"row {index + 1}"
        return f"{self.uri} {place}" + (f", column {column!r}" if column is not None else "")


def open_source(uri: str, settings: Any = None) -> tuple[pafs.FileSystem, str]:
    """The filesystem holding ``uri`` and its path there (``s3://`` through the ``storage``
    settings: endpoint, region, credentials; see :func:`inhouse.storage.filesystem_for`)."""
    from inhouse.config import StorageSettings
    from inhouse.storage import filesystem_for

    return filesystem_for(uri, settings if settings is not None else StorageSettings())


def file_format(uri: str, given: str | None = None) -> str:
    """``csv`` or ``parquet``: ``given``, else from the name's suffix."""
    if given is not None:
        if given not in FORMATS:
            raise InvalidInputError(f"format {given!r} is not one of {', '.join(FORMATS)}")
        return given
    name = uri.lower().split("?")[0]
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".txt")):
        return "csv"
    raise InvalidInputError(f"{uri}: cannot tell CSV from Parquet by its name; give --format")


def read_tabular_file(
    uri: str,
    *,
    filesystem: pafs.FileSystem,
    path: str,
    format: str | None = None,
    text_columns: list[str] | tuple[str, ...] = (),
) -> TabularFile:
    """Read the whole file; ``text_columns`` are kept as text (labels, categorical codes).

    CSV types are inferred over the whole file (a column with one non-number is text); the
    caller decides what a text column means.
    """
    import pyarrow as pa
    import pyarrow.fs as pafs

    kind = file_format(uri, format)
    try:
        info = filesystem.get_file_info(path)
    except OSError as exc:  # the store cannot be reached (endpoint, network, credentials)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UnavailableError(f"{uri}: cannot reach the storage: {first}") from None
    if info.type != pafs.FileType.File:
        raise InvalidInputError(f"{uri} does not exist or is not a file")
    if info.size is not None and info.size > MAX_IMPORT_BYTES:
        raise InvalidInputError(f"{uri} is larger than {MAX_IMPORT_BYTES} bytes")
    try:
        if kind == "csv":
            table = _read_csv(uri, filesystem, path, text_columns)
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path, filesystem=filesystem)
            for name in text_columns:
                if name in table.column_names and not pa.types.is_string(table[name].type):
                    position = table.column_names.index(name)
                    table = table.set_column(position, name, table[name].cast(pa.string()))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        line = _ragged_line(filesystem, path) if kind == "csv" else None
        raise InvalidInputError(_arrow_message(uri, exc, line)) from None
    if table.num_rows == 0:
        raise InvalidInputError(f"{uri} has no data rows")
    duplicates = sorted({c for c in table.column_names if table.column_names.count(c) > 1})
    if duplicates:
        raise InvalidInputError(f"{uri}: column {duplicates[0]!r} appears twice in the header")
    return TabularFile(uri=uri, format=kind, table=table)


def _read_csv(
    uri: str, filesystem: pafs.FileSystem, path: str, text_columns: list[str] | tuple[str, ...]
) -> pa.Table:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    convert = pcsv.ConvertOptions(
        column_types={name: pa.string() for name in text_columns},
        strings_can_be_null=False,
    )
    with filesystem.open_input_stream(path) as stream:
        table = pcsv.read_csv(stream, convert_options=convert)
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_binary(column.type):
            raise InvalidInputError(f"{uri}, column {name!r}: not UTF-8 text")
    return table


def _ragged_line(filesystem: pafs.FileSystem, path: str) -> int | None:
    """The line number of the first CSV record whose field count differs from the header's
    (Arrow's parse errors do not say; only read on that error)."""
    import csv
    import io

    try:
        with filesystem.open_input_stream(path) as stream:
            text = io.TextIOWrapper(io.BufferedReader(stream), encoding="utf-8", newline="")
            reader = csv.reader(text)
            width = len(next(reader, []))
            for record in reader:
                if len(record) != width:
                    return reader.line_num
    except (OSError, UnicodeDecodeError, csv.Error, ValueError):
        return None
    return None


def _arrow_message(uri: str, exc: Exception, line: int | None = None) -> str:
    """One line naming the file for an Arrow read error (with the offending text)."""
    text = str(exc).strip()
    parse = _CSV_PARSE.search(text)
    if parse is not None:
        expected, got, row = parse.groups()
        snippet = row.splitlines()[0][:60] if row else ""
        place = f" line {line}" if line is not None else ""
        return (
            f"{uri}{place}: the row has {got} fields where the header has {expected} "
            f"(it starts {snippet!r})"
        )
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"{uri}: cannot be read: {first[:200]}"
