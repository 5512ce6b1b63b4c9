"""Data sets as SQL tables (SQLite or PostgreSQL) and readers into tensors."""

from inhouse.data.reading import read_rows
from inhouse.data.rows import Rows
from inhouse.data.seed import BUILTIN, seed
from inhouse.data.store import (
    DatasetInfo,
    append_rows,
    create_dataset,
    describe,
    get_dataset,
    list_datasets,
)

__all__ = [
    "BUILTIN",
    "DatasetInfo",
    "Rows",
    "append_rows",
    "create_dataset",
    "describe",
    "get_dataset",
    "list_datasets",
    "read_rows",
    "seed",
]
