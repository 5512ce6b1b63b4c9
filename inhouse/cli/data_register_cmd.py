"""``inhouse data register``: an existing table or view of the user's, used in place.

Mounted on ``data`` by :mod:`inhouse.cli.data_cmd` (:func:`add_data_register`); the work is
:func:`inhouse.data.external.register_table`.
"""

from __future__ import annotations

import argparse
from typing import Any

from inhouse.cli.auth import authorize
from inhouse.cli.parser import leaf
from inhouse.config import Settings

CONTRACT = (
    "The table or view lives in inhouse's database (--database-url; TABLE or SCHEMA.TABLE) and "
    "is read in place: inhouse only SELECTs from it and never copies its rows. The contract: "
    "rows are appended with a unique integer key and never updated or deleted once consumed "
    "(the coordinator's watermark, the lineage's row windows and the privacy ledger rely on "
    "it). Keys may commit out of order: each is numbered when first seen, so none is skipped. "
    "A row count and checksum per consumed window are recorded and re-checked before every "
    "training on the data set; a change stops that training (and the coordinator) with an "
    "error naming the window. The held-out split is fixed by the key: a row is a test row "
    "when splitmix64(key) / 2**64 < --test-fraction."
)


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def add_data_register(acts: Any) -> None:
    """Add ``register`` to the ``data`` sub-parsers."""
    register = leaf(
        acts, "register", cmd_data_register, "use an existing table or view as a data set"
    )
    register.description = f"Use an existing table or view as a tabular data set. {CONTRACT}"
    register.add_argument("--name", required=True, help="data set name (a-z, 0-9, _)")
    register.add_argument("--table", required=True, help="TABLE or SCHEMA.TABLE (or a view)")
    register.add_argument("--key", required=True, help="unique, increasing integer key column")
    register.add_argument("--label", required=True, help="label column (class name or index)")
    register.add_argument("--time", default=None, help="optional time column (recorded)")
    register.add_argument(
        "--features",
        type=_names,
        default=[],
        help="comma-separated feature columns (default: every other numeric column)",
    )
    register.add_argument(
        "--classes",
        type=_names,
        default=[],
        help="comma-separated class names in order; the label holds the name or its index "
        "(default: the label's distinct values)",
    )
    register.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="share of keys held out as the test split, fixed per key (default 0.2)",
    )
    register.add_argument("--description", default="", help="free text for `data list`")


def cmd_data_register(settings: Settings, args: argparse.Namespace) -> int:
    from inhouse.data import describe
    from inhouse.data.external import register_table
    from inhouse.schema import get_engine

    # data:admin, not data:write: a registered source can expose any table the database role
    # can read (another application's, say) to training, explanations and the lineage.
    authorize(settings, action="data:admin", resource=args.name, detail=f"register {args.table}")
    engine = get_engine(settings.db_url)
    register_table(
        engine,
        name=args.name,
        table=args.table,
        key=args.key,
        label=args.label,
        time=args.time,
        features=args.features,
        classes=args.classes,
        test_fraction=args.test_fraction,
        description=args.description,
    )
    info = describe(engine, args.name)
    print(
        f"{args.name}: registered {args.table} in place, {info.n_features} features, "
        f"{len(info.class_names)} classes, {info.train_rows} train + {info.test_rows} test rows"
    )
    return 0
