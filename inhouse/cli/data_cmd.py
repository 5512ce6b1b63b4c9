"""``inhouse data seed|list|append|import|register``: the data sets the models learn from.

``data append`` is how new labelled rows reach a model's stream from a CSV (the coordinator
retrains on them): the data set's kind reads the file (``kinds/<name>/datasets.py``,
:class:`inhouse.kinds.datasets.DatasetsKind`). ``data import`` creates a tabular data set from
a CSV or Parquet file (:mod:`inhouse.cli.data_import_cmd`) or a text data set from a CSV
(:mod:`inhouse.cli.import_cmd`); ``data seed`` creates the built-in ones; ``data register``
uses an existing table in place (:mod:`inhouse.cli.data_register_cmd`).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from inhouse.cli.auth import authorize
from inhouse.cli.data_register_cmd import add_data_register
from inhouse.cli.import_cmd import add_data_import
from inhouse.cli.parser import leaf
from inhouse.config import Settings
from inhouse.console import print_table, step


def add_parser(commands: Any) -> None:
    """Register ``data`` and its actions on the ``inhouse`` sub-parsers."""
    text = "data sets (SQL tables)"
    data = commands.add_parser("data", help=text, description=text)
    acts = data.add_subparsers(dest="action", required=True, metavar="ACTION")
    seed = leaf(acts, "seed", cmd_data_seed, "create and fill built-in data sets")
    seed.add_argument(
        "names",
        nargs="*",
        default=["digits"],
        choices=["digits", "breast_cancer", "mnist", "fashion_mnist"],
        help="which data sets (default: digits; mnist needs the extra inhouse[mnist], "
        "fashion_mnist Debian's dataset-fashion-mnist)",
    )
    leaf(acts, "list", cmd_data_list, "list data sets with row counts")
    append = leaf(
        acts,
        "append",
        cmd_data_append,
        "append labelled rows from a CSV to a data set (the coordinator's stream)",
    )
    append.add_argument("--dataset", required=True, help="data set to append to, e.g. digits")
    append.add_argument(
        "--csv",
        required=True,
        help="UTF-8 CSV with a header: the data set's feature columns by name (tabular) or "
        "the text column (text), and the label",
    )
    append.add_argument(
        "--text-column", default="text", help="text data sets: column with the text (text)"
    )
    append.add_argument(
        "--label-column", default="label", help="column with the class name or index (label)"
    )
    append.add_argument(
        "--split",
        choices=["train", "test"],
        default="train",
        help="train (default: new rows the coordinator retrains on) or test (held-out)",
    )
    add_data_import(acts)
    add_data_register(acts)


def _engine(settings: Settings) -> Any:
    from inhouse.schema import get_engine

    return get_engine(settings.db_url)


def cmd_data_seed(settings: Settings, args: argparse.Namespace) -> int:
    from inhouse.data import seed

    for name in args.names:
        authorize(settings, action="data:write", resource=name, detail="seed")
        started = time.perf_counter()
        with step(f"seeding {name}"):
            info, created = seed(_engine(settings), name)
        state = "created" if created else "already there"
        print(
            f"{name}: {state}, {info.train_rows} train + {info.test_rows} test rows of "
            f"{info.n_features} features, {len(info.class_names)} classes (ids "
            f"{info.first_id}..{info.last_id}) in {time.perf_counter() - started:.1f} s, "
            f"in {settings.db_url}"
        )
    return 0


def cmd_data_append(settings: Settings, args: argparse.Namespace) -> int:
    """Append a CSV's rows to a data set; the data set's kind reads the file."""
    from inhouse.data import get_dataset
    from inhouse.kinds import kind_named

    authorize(settings, action="data:write", resource=args.dataset, detail="append")
    engine = _engine(settings)
    record = get_dataset(engine, args.dataset)
    appended = kind_named(record.kind).datasets.append_csv(engine, record, args)
    print(
        f"{args.dataset}: appended {appended.count} {args.split} rows "
        f"(ids {appended.first}..{appended.last})"
    )
    return 0


def cmd_data_list(settings: Settings, _args: argparse.Namespace) -> int:
    from inhouse.data import describe, list_datasets

    engine = _engine(settings)
    rows = []
    for name in list_datasets(engine):
        authorize(settings, action="data:read", resource=name, detail="list")
        info = describe(engine, name)
        rows.append(
            [
                name,
                info.n_features,
                len(info.class_names),
                info.train_rows,
                info.test_rows,
                info.last_id,
            ]
        )
    print_table(["data set", "features", "classes", "train", "test", "last id"], rows)
    return 0
