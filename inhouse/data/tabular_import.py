"""Tabular data sets from the user's CSV and Parquet files: schema inferred, overridable.

The label column (``label`` unless named) gives the classes: its distinct values, sorted
(numerically when they are all numbers). Every other column is a feature unless ``features``
lists them: numbers as they are, text columns (and those named ``categorical``) as
categories, one-hot (``col=value`` features, categories sorted) or ordinal (the category's
index). A text column that is mostly numbers is taken as numeric and its first non-number is
refused, as is a missing or non-finite cell, each with its file, line (CSV; row for Parquet)
and column. The held-out split is deterministic: file row ``i`` is a test row when it is among
the first ``round(n * test_fraction)`` of ``numpy.random.default_rng(seed).permutation(n)``.
All of it, and the file, is recorded in the data set's ``layout``.

The catalog entry, the table and every row are written in one transaction: a bad file or a
crash leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from inhouse.data.packed import Packing, insert_packed
from inhouse.data.store import create_in
from inhouse.data.table import rows_table
from inhouse.data.tabular_file import TabularFile, open_source, read_tabular_file
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


@dataclass(frozen=True)
class TabularImported:
    """What an import wrote."""

    train_rows: int
    test_rows: int
    feature_names: list[str]
    class_names: list[str]
    layout: dict[str, Any]


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


def _categories(
    file: TabularFile, name: str, column: pa.ChunkedArray, encoding: str
) -> tuple[np.ndarray[Any, Any], list[str], list[str]]:
    """Encoded values (n, k), feature names and the sorted categories of a categorical column."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    text = _text_column(file, name, pc.cast(column, pa.string()))
    categories = _sorted_values([str(v) for v in pc.unique(text).to_pylist()])
    if len(categories) > MAX_CATEGORIES:
        raise InvalidInputError(
            f"{file.uri}, column {name!r}: {len(categories)} distinct values, more than "
            f"{MAX_CATEGORIES} categories; leave it out with --features"
        )
    index = np.asarray(pc.index_in(text, value_set=pa.array(categories)).to_numpy())
    if encoding == "ordinal":
        return index.astype(np.float64).reshape(-1, 1), [name], categories
    onehot = np.zeros((len(index), len(categories)), dtype=np.float64)
    onehot[np.arange(len(index)), index] = 1.0
    return onehot, [f"{name}={c}" for c in categories], categories


def _labels(file: TabularFile, name: str) -> tuple[np.ndarray[Any, Any], list[str]]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if name not in file.table.column_names:
        raise InvalidInputError(
            f"{file.uri} has no label column {name!r}; name it with --label "
            f"(columns: {', '.join(file.table.column_names[:20])})"
        )
    text = _text_column(file, name, pc.cast(file.table[name], pa.string()))
    classes = _sorted_values([str(v) for v in pc.unique(text).to_pylist()])
    if len(classes) < 2:
        raise InvalidInputError(f"{file.uri}, column {name!r}: one class only; need two or more")
    index = pc.index_in(text, value_set=pa.array(classes)).to_numpy()
    return np.asarray(index, dtype=np.int64), classes


def encode_table(
    file: TabularFile, options: TabularOptions
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], list[str], list[str], dict[str, Any]]:
    """Features (n, d) float64, class indices, feature names, class names and the schema."""
    import numpy as np

    if options.encoding not in ENCODINGS:
        raise InvalidInputError(f"encoding {options.encoding!r} is not one of onehot, ordinal")
    columns = file.table.column_names
    chosen = options.features or [c for c in columns if c != options.label]
    unknown = [c for c in [*chosen, *options.categorical] if c not in columns]
    if unknown:
        raise InvalidInputError(f"{file.uri} has no column {unknown[0]!r}; it has {columns[:20]}")
    if options.label in chosen:
        raise InvalidInputError(f"column {options.label!r} is the label; it cannot be a feature")
    if not chosen:
        raise InvalidInputError(f"{file.uri} has no feature column besides the label")
    labels, classes = _labels(file, options.label)
    declared = set(options.categorical)
    blocks: list[np.ndarray[Any, Any]] = []
    names: list[str] = []
    schema: dict[str, Any] = {}
    for name in chosen:
        column = file.table[name]
        if _is_categorical(name, column, declared):
            block, block_names, categories = _categories(file, name, column, options.encoding)
            schema[name] = {"type": "categorical", "encoding": options.encoding,
                            "categories": categories}  # fmt: skip
        else:
            block, block_names = _numeric(file, name, column).reshape(-1, 1), [name]
            schema[name] = {"type": "numeric"}
        blocks.append(block)
        names += block_names
    # Column-major while filling (contiguous writes); the packing transposes once.
    x = np.empty((len(names), len(labels)), dtype=np.float64)
    row = 0
    for block in blocks:
        x[row : row + block.shape[1]] = block.T
        row += block.shape[1]
    return x.T, labels, names, classes, schema


def held_out_mask(n: int, *, fraction: float, seed: int) -> np.ndarray[Any, Any]:
    """Which of ``n`` file rows are held out (see the module docstring)."""
    import numpy as np

    if not 0.0 <= fraction < 1.0:
        raise InvalidInputError(f"test fraction must be in [0, 1), not {fraction}")
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[: round(n * fraction)]] = True
    return mask


def import_tabular(
    engine: Engine,
    *,
    name: str,
    uri: str,
    options: TabularOptions | None = None,
    settings: Any = None,
    description: str = "",
) -> TabularImported:
    """Create tabular data set ``name`` from the CSV or Parquet file ``uri`` in one transaction."""
    import numpy as np

    options = options or TabularOptions()
    filesystem, path = open_source(uri, settings)
    text_columns = [options.label, *options.categorical]
    file = read_tabular_file(
        uri, filesystem=filesystem, path=path, format=options.format, text_columns=text_columns
    )
    x, labels, features, classes, schema = encode_table(file, options)
    test = held_out_mask(len(labels), fraction=options.test_fraction, seed=options.seed)
    layout: dict[str, Any] = {"dtype": options.dtype}
    if options.dtype == "uint8":
        layout["scale"] = options.scale
    packing = Packing.of(layout, len(features))
    stored = packing.encode(x, where=f"{uri} data row")
    layout["import"] = {
        "file": uri.split("?")[0],
        "format": file.format,
        "rows": len(labels),
        "label": options.label,
        "columns": schema,
        "split": {
            "test_fraction": options.test_fraction,
            "seed": options.seed,
            "method": "numpy.random.default_rng(seed).permutation(rows)[:round(rows * "
            "test_fraction)] are test rows",
            "test_rows": int(test.sum()),
        },
    }
    splits = np.where(test, "test", "train").tolist()
    with engine.begin() as conn:
        create_in(
            conn,
            name=name,
            feature_names=features,
            class_names=classes,
            description=description or f"imported from {uri.split('?')[0]}",
            layout=layout,
        )
        insert_packed(
            conn,
            rows_table(name),
            blobs=packing.blobs(stored),
            labels=labels.tolist(),
            splits=splits,
        )
    return TabularImported(
        train_rows=int((~test).sum()),
        test_rows=int(test.sum()),
        feature_names=features,
        class_names=classes,
        layout=layout,
    )
