"""The tabular kind's data sets (``DATASETS``): rows of numeric features from a CSV.

The CSV has the data set's feature columns by name (in any order, extra columns ignored) and a
label column holding a class name or index (:func:`inhouse.data.csv_file.read_tabular_csv`).
A data set imported from a file (``inhouse data import FILE``) takes files like the one it was
imported from instead, CSV or Parquet: its recorded columns, encoded as at import
(:func:`inhouse.data.tabular_import.encode_for_append`).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from inhouse.kinds.datasets import Appended

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from inhouse.data.table import DatasetRecord


class TabularDatasets:
    """:class:`inhouse.kinds.datasets.DatasetsKind` for rows of numeric features."""

    def append_csv(
        self, engine: Engine, record: DatasetRecord, args: argparse.Namespace
    ) -> Appended:
        from inhouse.data import append_rows
        from inhouse.data.csv_file import read_tabular_csv
        from inhouse.data.tabular_import import encode_for_append

        if "import" in (record.layout or {}):
            x, labels = encode_for_append(args.csv, record, label=args.label_column)
            first, last = append_rows(
                engine, record.name, features=x.tolist(), labels=labels, split=args.split
            )
            return Appended(first, last, len(labels))
        features, labels = read_tabular_csv(
            args.csv,
            feature_names=list(record.feature_names),
            class_names=list(record.class_names),
            label_column=args.label_column,
        )
        first, last = append_rows(
            engine, record.name, features=features, labels=labels, split=args.split
        )
        return Appended(first, last, len(labels))


DATASETS = TabularDatasets()
