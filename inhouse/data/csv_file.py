"""Reading a user's CSV file safely: it must exist, stay under a size limit, be UTF-8 and have a
header row; and tabular rows (features + label) read from one by column name."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from inhouse.errors import InvalidInputError

MAX_CSV_BYTES = 512 * 1024 * 1024


def read_csv_dicts(
    path: str | os.PathLike[str],
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the ``(line number, row)`` pairs of a UTF-8 CSV file."""
    file = Path(path)
    if not file.is_file():
        raise InvalidInputError(f"CSV file {file} does not exist")
    if file.stat().st_size > MAX_CSV_BYTES:
        raise InvalidInputError(f"CSV file {file} is larger than {MAX_CSV_BYTES} bytes")
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            rows = list(enumerate(reader, start=2))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInputError(f"{file} is not a readable UTF-8 CSV: {exc}") from None
    if not columns:
        raise InvalidInputError(f"{file} has no header row")
    return columns, rows


def class_index(cell: str | None, index: dict[str, int], *, where: str) -> int:
    """The class a label cell names: a class name, or an index into the class list."""
    label = (cell or "").strip()
    if label in index:
        return index[label]
    if label.isdigit() and int(label) < len(index):
        return int(label)
    raise InvalidInputError(
        f"{where}: label {label[:40]!r} is neither a class name nor an index 0..{len(index) - 1}"
    )


def read_tabular_csv(
    path: str | os.PathLike[str],
    *,
    feature_names: list[str],
    class_names: list[str],
    label_column: str = "label",
) -> tuple[list[list[float]], list[int]]:
    """Features (the data set's columns, by name, in its order) and class indices (a class
    name or index) of every row; the first bad cell is refused with its line and column."""
    columns, rows = read_csv_dicts(path)
    missing = [c for c in [*feature_names, label_column] if c not in columns]
    if missing:
        shown = ", ".join(repr(c) for c in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InvalidInputError(f"{path} lacks column(s) {shown}{more} of the data set")
    index = {name: i for i, name in enumerate(class_names)}
    features: list[list[float]] = []
    labels: list[int] = []
    for line, row in rows:
        values = []
        for name in feature_names:
            cell = (row.get(name) or "").strip()
            try:
                value = float(cell)
            except ValueError:
                raise InvalidInputError(
                    f"{path} line {line}: {name}={cell[:40]!r} is not a number"
                ) from None
            if not math.isfinite(value):
                raise InvalidInputError(f"{path} line {line}: {name} is {cell!r}, not finite")
            values.append(value)
        labels.append(class_index(row.get(label_column), index, where=f"{path} line {line}"))
        features.append(values)
    if not rows:
        raise InvalidInputError(f"{path} has no data rows")
    return features, labels
