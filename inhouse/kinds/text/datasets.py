"""The text kind's data sets (``DATASETS``): labelled texts from a CSV.

The CSV has a text column (``--text-column``, default ``text``) and a label column holding a
class name or index; a text data set itself is created by ``inhouse data import``
(:func:`inhouse.data.text_import.import_text_csv`).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from inhouse.kinds.datasets import Appended

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from inhouse.data.table import DatasetRecord


class TextDatasets:
    """:class:`inhouse.kinds.datasets.DatasetsKind` for labelled texts."""

    def append_csv(
        self, engine: Engine, record: DatasetRecord, args: argparse.Namespace
    ) -> Appended:
        from inhouse.data.csv_file import class_index
        from inhouse.data.text_import import append_text_rows, read_csv_pairs

        pairs, _ = read_csv_pairs(
            args.csv, text_column=args.text_column, label_column=args.label_column
        )
        index = {name: i for i, name in enumerate(record.class_names)}
        labels = [
            class_index(label, index, where=f"{args.csv} line {line}")
            for line, (_text, label) in enumerate(pairs, start=2)
        ]
        first, last = append_text_rows(
            engine, record.name, texts=[text for text, _ in pairs], labels=labels, split=args.split
        )
        return Appended(first, last, len(pairs))


DATASETS = TextDatasets()
