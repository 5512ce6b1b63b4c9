"""Data sets as SQL tables (SQLite or PostgreSQL) and readers into tensors."""

from inhouse.data.seed import BUILTIN, seed
from inhouse.data.store import (
    DatasetInfo,
    Rows,
    append_rows,
    create_dataset,
    describe,
    get_dataset,
    list_datasets,
    read_rows,
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
