"""Columns of a tabular file as features and class indices (see
:mod:`inhouse.data.tabular_import` for the rules).

Used twice: at import, where the schema is inferred (categories and classes are the values
found, sorted), and when rows are appended to an imported data set, where the schema recorded
at import is applied as it is (a value outside its categories or classes is refused).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inhouse.data.tabular_file import TabularFile
from inhouse.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa


ENCODINGS = ("onehot", "ordinal")
MAX_CATEGORIES = 1000
_NUMBER = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"


@dataclass(frozen=True)
class TabularOptions:
    """What to take from the file; every field has an inferred default."""

    features: list[str] | None = None
    label: str = "label"
    categorical: list[str] = field(default_factory=list)
    encoding: str = "onehot"
    test_fraction: float = 0.2
    seed: int = 0
    dtype: str = "float32"
    scale: float = 1.0
    format: str | None = None


def _sorted_values(values: list[str]) -> list[str]:
    """Numbers by value when they all are numbers, else text order."""
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def _text_column(file: TabularFile, name: str, values: pa.ChunkedArray) -> pa.ChunkedArray:
    """A text column with no empty cell (one is refused with its place)."""
    import pyarrow.compute as pc

    trimmed = pc.utf8_trim_whitespace(values)
    empty = pc.or_(pc.is_null(trimmed), pc.equal(trimmed, ""))
    if pc.any(empty).as_py():
        raise InvalidInputError(f"{file.where(_first(empty), name)}: the cell is empty")
    return trimmed


def _first(mask: pa.ChunkedArray | pa.Array) -> int:
    import pyarrow.compute as pc

    return int(pc.index(mask, True).as_py())


def _numeric(file: TabularFile, name: str, column: pa.ChunkedArray) -> np.ndarray[Any, Any]:
    """A numeric column as float64, refusing a missing, non-finite or non-number cell."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.null_count:
        raise InvalidInputError(f"{file.where(_first(pc.is_null(column)), name)}: missing value")
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        bad = pc.invert(pc.match_substring_regex(column, _NUMBER))
        at = _first(bad)
        if at >= 0:
            value = column[at].as_py()
            raise InvalidInputError(f"{file.where(at, name)}: {value!r} is not a number")
        column = pc.cast(pc.utf8_trim_whitespace(column), pa.float64())
    if pa.types.is_boolean(column.type):
        column = pc.cast(column, pa.int8())
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise InvalidInputError(
            f"{file.uri}, column {name!r}: type {column.type} is not a number; "
            "leave it out with --features or name it with --categorical"
        )
    values = np.asarray(column.to_numpy(), dtype=np.float64)
    bad_cells = ~np.isfinite(values)
    if bad_cells.any():
        raise InvalidInputError(
            f"{file.where(int(np.argmax(bad_cells)), name)}: {values[bad_cells][0]} is not finite"
        )
    return values


def _is_categorical(name: str, column: pa.ChunkedArray, declared: set[str]) -> bool:
    """Declared, or text that is not mostly numbers (those are numeric with typos)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if name in declared:
        return True
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return False
    numbers = pc.sum(pc.match_substring_regex(column, _NUMBER)).as_py() or 0
    return bool(numbers * 2 < len(column))


def _index_in(
    file: TabularFile, name: str, text: pa.ChunkedArray, values: list[str], what: str
) -> np.ndarray[Any, Any]:
    """The position of each cell in ``values``; a cell outside them is refused."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    index = pc.index_in(text, value_set=pa.array(values, type=pa.string()))
    if index.null_count:
        at = _first(pc.is_null(index))
        raise InvalidInputError(
            f"{file.where(at, name)}: {text[at].as_py()[:40]!r} is not one of the data set's "
            f"{len(values)} {what}"
        )
    return np.asarray(index.to_numpy(), dtype=np.int64)


def _categories(
    file: TabularFile,
    name: str,
    column: pa.ChunkedArray,
    encoding: str,
    known: list[str] | None = None,
) -> tuple[np.ndarray[Any, Any], list[str], list[str]]:
    """Encoded values (n, k), feature names and the sorted categories of a categorical column
    (``known``: the categories recorded at import)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    text = _text_column(file, name, pc.cast(column, pa.string()))
    categories = known or _sorted_values([str(v) for v in pc.unique(text).to_pylist()])
    if len(categories) > MAX_CATEGORIES:
        raise InvalidInputError(
            f"{file.uri}, column {name!r}: {len(categories)} distinct values, more than "
            f"{MAX_CATEGORIES} categories; leave it out with --features"
        )
    index = _index_in(file, name, text, categories, "categories")
    if encoding == "ordinal":
        return index.astype(np.float64).reshape(-1, 1), [name], categories
    onehot = np.zeros((len(index), len(categories)), dtype=np.float64)
    onehot[np.arange(len(index)), index] = 1.0
    return onehot, [f"{name}={c}" for c in categories], categories


def _labels(
    file: TabularFile, name: str, known: list[str] | None = None
) -> tuple[np.ndarray[Any, Any], list[str]]:
    import pyarrow as pa
    import pyarrow.compute as pc

    if name not in file.table.column_names:
        raise InvalidInputError(
            f"{file.uri} has no label column {name!r}; name it with --label "
            f"(columns: {', '.join(file.table.column_names[:20])})"
        )
    text = _text_column(file, name, pc.cast(file.table[name], pa.string()))
    classes = known or _sorted_values([str(v) for v in pc.unique(text).to_pylist()])
    if len(classes) < 2:
        raise InvalidInputError(f"{file.uri}, column {name!r}: one class only; need two or more")
    return _index_in(file, name, text, classes, "classes"), classes


def encode_table(
    file: TabularFile,
    options: TabularOptions,
    *,
    schema: dict[str, Any] | None = None,
    classes: list[str] | None = None,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], list[str], list[str], dict[str, Any]]:
    """Features (n, d) float64, class indices, feature names, class names and the schema.

    ``schema`` and ``classes`` (recorded at import) are applied as they are: the columns, their
    types and categories, the classes.
    """
    import numpy as np

    if options.encoding not in ENCODINGS:
        raise InvalidInputError(f"encoding {options.encoding!r} is not one of onehot, ordinal")
    columns = file.table.column_names
    chosen = (
        list(schema) if schema else options.features or [c for c in columns if c != options.label]
    )
    unknown = [c for c in [*chosen, *options.categorical] if c not in columns]
    if unknown:
        raise InvalidInputError(f"{file.uri} has no column {unknown[0]!r}; it has {columns[:20]}")
    if options.label in chosen:
        raise InvalidInputError(f"column {options.label!r} is the label; it cannot be a feature")
    if not chosen:
        raise InvalidInputError(f"{file.uri} has no feature column besides the label")
    labels, classes = _labels(file, options.label, classes)
    declared = set(options.categorical)
    blocks: list[np.ndarray[Any, Any]] = []
    names: list[str] = []
    found: dict[str, Any] = {}
    for name in chosen:
        column, known = file.table[name], (schema or {}).get(name)
        categorical = known["type"] == "categorical" if known else None
        if categorical or (known is None and _is_categorical(name, column, declared)):
            encoding = known["encoding"] if known else options.encoding
            recorded = known["categories"] if known else None
            block, block_names, categories = _categories(file, name, column, encoding, recorded)
            found[name] = {"type": "categorical", "encoding": encoding, "categories": categories}
        else:
            block, block_names = _numeric(file, name, column).reshape(-1, 1), [name]
            found[name] = {"type": "numeric"}
        blocks.append(block)
        names += block_names
    # Column-major while filling (contiguous writes); the packing transposes once.
    x = np.empty((len(names), len(labels)), dtype=np.float64)
    row = 0
    for block in blocks:
        x[row : row + block.shape[1]] = block.T
        row += block.shape[1]
    return x.T, labels, names, classes, found
