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

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from inhouse.data.packed import Packing, insert_packed
from inhouse.data.seal import reserve_seqs
from inhouse.data.store import create_in
from inhouse.data.table import DatasetRecord, rows_table
from inhouse.data.tabular_file import open_source, read_tabular_file
from inhouse.data.tabular_schema import TabularOptions, encode_table
from inhouse.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["TabularImported", "TabularOptions", "encode_for_append", "import_tabular"]


@dataclass(frozen=True)
class TabularImported:
    """What an import wrote."""

    train_rows: int
    test_rows: int
    feature_names: list[str]
    class_names: list[str]
    layout: dict[str, Any]


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
        table = rows_table(name)
        insert_packed(
            conn,
            table,
            blobs=packing.blobs(stored),
            labels=labels.tolist(),
            splits=splits,
            first_seq=reserve_seqs(conn, table.name),
        )
    return TabularImported(
        train_rows=int((~test).sum()),
        test_rows=int(test.sum()),
        feature_names=features,
        class_names=classes,
        layout=layout,
    )


def encode_for_append(
    uri: str, record: DatasetRecord, *, label: str, settings: Any = None
) -> tuple[np.ndarray[Any, Any], list[int]]:
    """Rows of a file in the schema an imported data set recorded (its columns, categories
    and classes): features and class indices ready for :func:`inhouse.data.append_rows`.
    ``label`` is the label column, or the one of the import when the file has no such column.
    """
    imported = (record.layout or {}).get("import")
    if not isinstance(imported, dict):
        raise InvalidInputError(f"data set {record.name!r} was not imported from a file")
    columns: dict[str, Any] = imported["columns"]
    categorical = [name for name, column in columns.items() if column["type"] == "categorical"]
    filesystem, path = open_source(uri, settings)
    file = read_tabular_file(
        uri,
        filesystem=filesystem,
        path=path,
        text_columns=[label, imported["label"], *categorical],
    )
    chosen = label if label in file.table.column_names else str(imported["label"])
    x, labels, names, _, _ = encode_table(
        file, TabularOptions(label=chosen), schema=columns, classes=list(record.class_names)
    )
    if names != list(record.feature_names):
        raise InvalidInputError(f"{uri} does not give the features of {record.name!r}")
    return x, labels.tolist()
