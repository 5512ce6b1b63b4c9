"""The data-set half of a model kind (``DatasetsKind``): new rows of its data sets from a CSV.

``inhouse data append --dataset NAME --csv FILE`` reads the data set's kind (its rows' kind is
the kind of model it trains) and calls that kind's :meth:`DatasetsKind.append_csv`, which reads
the file its own way (tabular: the feature columns by name; text: one text column) and appends
the rows in one transaction: a bad cell refuses the whole file, naming its line.

A kind without a ``datasets.py`` has no CSV rows to append: asking is a clear error.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from inhouse.data.table import DatasetRecord


@dataclass(frozen=True)
class Appended:
    """The ids of the first and last rows appended, and how many there were."""

    first: int
    last: int
    count: int


class DatasetsKind(Protocol):
    """What ``data append`` calls; one per kind (``kinds/<name>/datasets.py``, whose
    ``DATASETS`` is one of these)."""

    def append_csv(
        self, engine: Engine, record: DatasetRecord, args: argparse.Namespace
    ) -> Appended:
        """Append the rows of ``args.csv`` to the data set ``record`` as ``args.split`` rows
        (the command's flags: ``label_column`` and the kind's own, e.g. ``text_column``)."""
        ...
