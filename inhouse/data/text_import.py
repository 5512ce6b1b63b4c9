"""Text data sets: import a CSV of (text, label) rows into the data layer and read them back.

A text data set is an ordinary data set of kind ``text``: its row table (``ds_<name>``, see
:mod:`inhouse.data.table`) fills the ``text`` column and leaves ``features`` empty, so the
stream, the watermark and plain-SQL appends work exactly as for tabular sets. Labels are
stored as class indices; the class names (from the file, or a JSON list such as Banking77's
``categories.json``) are in the catalog.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from inhouse.data.csv_file import read_csv_dicts
from inhouse.data.reading import in_window
from inhouse.data.store import MAX_APPEND_ROWS, create_dataset, get_dataset
from inhouse.data.table import rows_table
from inhouse.errors import InvalidInputError

# A text data set's kind: the name of the model kind that trains on it (inhouse.kinds "text").
TEXT_DATA = "text"
MAX_TEXT_CHARS = 10_000
INSERT_CHUNK = 5_000


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote: rows per split, and rows skipped for an empty text or label."""

    train_rows: int
    test_rows: int
    skipped_empty: int


@dataclass(frozen=True)
class TextRows:
    """A row range of a text data set: texts, class indices and row ids, ordered by id."""

    texts: list[str]
    labels: list[int]
    ids: list[int]

    def __len__(self) -> int:
        return len(self.labels)


def _clean_text(i: int, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"row {i}: text must be a string")
    text = value.strip()
    if not text:
        raise InvalidInputError(f"row {i}: text is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInputError(f"row {i}: text has {len(text)} characters; limit {MAX_TEXT_CHARS}")
    if "\x00" in text:
        raise InvalidInputError(f"row {i}: text contains a NUL character")
    return text


def read_csv_pairs(
    path: str | os.PathLike[str], *, text_column: str, label_column: str, skip_empty: bool = False
) -> tuple[list[tuple[str, str]], int]:
    """``(text, label)`` pairs of a UTF-8 CSV with a header row, checked row by row.

    Returns the pairs and how many rows were skipped because their text or label was empty
    (only with ``skip_empty``; otherwise such a row is refused).
    """
    file = Path(path)
    columns, rows = read_csv_dicts(file)
    for column in (text_column, label_column):
        if column not in columns:
            raise InvalidInputError(f"{file} has no column {column!r}; it has {columns}")
    kept = [
        (i, row)
        for i, row in rows
        if not skip_empty
        or (str(row[text_column] or "").strip() and str(row[label_column] or "").strip())
    ]
    pairs = [
        (_clean_text(i, row[text_column]), str(row[label_column] or "").strip()) for i, row in kept
    ]
    if not pairs:
        raise InvalidInputError(f"{file} has no data rows")
    if not 0 < len(pairs) <= MAX_APPEND_ROWS:
        raise InvalidInputError(f"{file}: import 1 to {MAX_APPEND_ROWS} rows at a time")
    return pairs, len(rows) - len(kept)


def read_class_names(path: str | os.PathLike[str]) -> list[str]:
    """A JSON list of class names (e.g. Banking77's ``categories.json``)."""
    try:
        names = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read class names from {path}: {exc}") from None
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise InvalidInputError(f"{path} must hold a JSON list of non-empty strings")
    if len(set(names)) != len(names):
        raise InvalidInputError(f"{path} lists a class twice")
    return names


def _rows(
    pairs: Sequence[tuple[str, str]], index: dict[str, int], split: str
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i, (text, label) in enumerate(pairs):
        if label not in index:
            raise InvalidInputError(f"{split} row {i}: label {label!r} is not a known class")
        rows.append({"text": text, "label": index[label], "split": split})
    return rows


def import_text_csv(
    engine: Engine,
    *,
    name: str,
    csv_path: str | os.PathLike[str],
    text_column: str = "text",
    label_column: str = "label",
    test_csv: str | os.PathLike[str] | None = None,
    class_names: Sequence[str] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    description: str = "",
    skip_empty: bool = False,
) -> ImportResult:
    """Create text data set ``name`` from a CSV, all in one transaction; returns rows written.

    The test split is ``test_csv`` when given, else a fixed random ``test_fraction`` of the
    file (seeded, so reimports agree). Classes default to the sorted distinct labels. Rows
    with an empty text or label are refused, or skipped and counted with ``skip_empty``.
    """
    pairs, skipped = read_csv_pairs(
        csv_path, text_column=text_column, label_column=label_column, skip_empty=skip_empty
    )
    test_pairs: list[tuple[str, str]] = []
    if test_csv is not None:
        test_pairs, skipped_test = read_csv_pairs(
            test_csv, text_column=text_column, label_column=label_column, skip_empty=skip_empty
        )
        skipped += skipped_test
    if test_csv is None:
        if not 0.0 <= test_fraction < 1.0:
            raise InvalidInputError(f"test fraction must be in [0, 1), not {test_fraction}")
        order = list(range(len(pairs)))
        random.Random(seed).shuffle(order)
        n_test = round(len(pairs) * test_fraction)
        chosen = set(order[:n_test])
        test_pairs = [p for i, p in enumerate(pairs) if i in chosen]
        pairs = [p for i, p in enumerate(pairs) if i not in chosen]
    names = (
        list(class_names)
        if class_names is not None
        else sorted({label for _, label in [*pairs, *test_pairs]})
    )
    index = {label: i for i, label in enumerate(names)}
    splits = [_rows(pairs, index, "train"), _rows(test_pairs, index, "test")]
    chunks = [
        split[i : i + INSERT_CHUNK] for split in splits for i in range(0, len(split), INSERT_CHUNK)
    ]
    create_dataset(
        engine,
        name=name,
        feature_names=[],
        class_names=names,
        kind=TEXT_DATA,
        description=description or f"text imported from {Path(csv_path).name}",
        initial_rows=[chunk for chunk in chunks if chunk],
    )
    return ImportResult(train_rows=len(splits[0]), test_rows=len(splits[1]), skipped_empty=skipped)


def read_text_rows(
    engine: Engine,
    name: str,
    *,
    split: str | None = None,
    after_id: int | None = None,
    up_to_id: int | None = None,
) -> TextRows:
    """Rows of a text data set with ``after_id < id <= up_to_id`` (both optional), by id."""
    record = get_dataset(engine, name)
    if record.kind != TEXT_DATA:
        raise InvalidInputError(f"data set {name!r} holds {record.kind} rows, not text")
    table = rows_table(name)
    query = in_window(
        select(table.c.seq.label("id"), table.c.text, table.c.label),
        table,
        split=split,
        after_id=after_id,
        up_to_id=up_to_id,
    )
    with engine.connect() as conn:
        result = conn.execute(query).all()
    return TextRows(
        texts=[str(r.text) for r in result],
        labels=[int(r.label) for r in result],
        ids=[int(r.id) for r in result],
    )


def append_text_rows(
    engine: Engine, name: str, *, texts: Sequence[str], labels: Sequence[int], split: str = "train"
) -> tuple[int, int]:
    """Append labelled texts in one transaction; returns the (first, last) ids written."""
    from inhouse.data.store import insert_rows

    record = get_dataset(engine, name)
    if record.kind != TEXT_DATA:
        raise InvalidInputError(f"data set {name!r} holds {record.kind} rows, not text")
    if split not in ("train", "test") or len(texts) != len(labels) or not texts:
        raise InvalidInputError("give as many labels as texts (at least one) and split train|test")
    n_classes = len(record.class_names)
    rows: list[dict[str, object]] = []
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        if isinstance(label, bool) or not 0 <= int(label) < n_classes:
            raise InvalidInputError(f"row {i}: label {label} outside 0..{n_classes - 1}")
        rows.append({"text": _clean_text(i, text), "label": int(label), "split": split})
    with engine.begin() as conn:
        return insert_rows(conn, name, rows)


__all__ = [
    "ImportResult",
    "TextRows",
    "append_text_rows",
    "import_text_csv",
    "read_class_names",
    "read_csv_pairs",
    "read_text_rows",
]
