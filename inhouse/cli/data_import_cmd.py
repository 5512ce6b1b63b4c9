"""``inhouse data import FILE --name N``: a tabular data set from a CSV or Parquet file.

:mod:`inhouse.cli.import_cmd` mounts these flags on ``data import`` beside the text import's
(``--csv``); FILE (a local path, or ``s3://...`` with object storage configured) or
``--kind tabular`` chooses this one. The import itself is
:func:`inhouse.data.tabular_import.import_tabular`.
"""

from __future__ import annotations

import argparse
from typing import Any

from inhouse.cli.auth import authorize
from inhouse.config import Settings

KIND_HELP = (
    "tabular (default with FILE: CSV or Parquet, one row per example) or text (default with "
    "--csv: a text column and a label)"
)
EPILOG = """\
tabular import (FILE):
  the label column (--label, default label) gives the classes, sorted; every other column
  is a feature unless --features lists them. Text columns and those named --categorical are
  encoded one-hot (a feature per category, col=value) or ordinal (--encoding). The held-out
  split is a fixed, seeded choice of --test-fraction of the rows (recorded in the data set).
  A bad cell is refused with its file, line and column; nothing is imported then.
  e.g. inhouse data import churn.parquet --name churn --label churned --categorical plan

text import (--csv FILE, or FILE with --kind text):
  one row per text with its label; see --text-column, --test-csv, --classes.
"""


def _names(value: str) -> list[str]:
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give comma-separated column names")
    return names


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


def add_tabular_flags(parser: argparse.ArgumentParser) -> None:
    """The tabular import's flags (FILE, --kind and the schema overrides)."""
    parser.add_argument(
        "file", nargs="?", metavar="FILE", help="CSV or Parquet file (local or s3://)"
    )
    parser.add_argument("--kind", choices=["tabular", "text"], help=KIND_HELP)
    parser.add_argument(
        "--features", type=_names, help="tabular: feature columns a,b,c (default: all but label)"
    )
    parser.add_argument(
        "--categorical", type=_names, default=[], help="tabular: columns to treat as categories"
    )
    parser.add_argument(
        "--encoding",
        choices=["onehot", "ordinal"],
        default="onehot",
        help="tabular: how categories become features (default onehot)",
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "uint8"],
        default="float32",
        help="tabular: how features are stored (uint8: whole multiples 0..255 of --scale, "
        "e.g. pixels)",
    )
    parser.add_argument(
        "--scale", type=_positive, default=1.0, help="tabular, uint8: value of one step (1)"
    )
    parser.add_argument(
        "--format", choices=["csv", "parquet"], help="tabular: file format (default: by name)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="tabular: seed of the held-out split (0)"
    )


def is_tabular(args: argparse.Namespace) -> bool:
    """Whether ``data import`` was asked for a tabular data set (see KIND_HELP)."""
    if args.kind is not None:
        return bool(args.kind == "tabular")
    return args.csv is None


def cmd_tabular_import(settings: Settings, args: argparse.Namespace) -> int:
    """Create a tabular data set from FILE and print what it holds."""
    from inhouse import services
    from inhouse.console import step
    from inhouse.data.tabular_import import TabularOptions, import_tabular
    from inhouse.errors import InvalidInputError

    uri = args.file or args.csv
    if uri is None:
        raise InvalidInputError("name the file to import: inhouse data import FILE --name N")
    authorize(settings, action="data:write", resource=args.name, detail=f"import {uri}")
    options = TabularOptions(
        features=args.features,
        label=args.label_column,
        categorical=list(args.categorical),
        encoding=args.encoding,
        test_fraction=args.test_fraction,
        seed=args.seed,
        dtype=args.dtype,
        scale=args.scale,
        format=args.format,
    )
    with step(f"importing {uri} into data set {args.name}"):
        done = import_tabular(
            services.engine(settings), name=args.name, uri=uri, options=options, settings=settings
        )
    shown = ", ".join(done.feature_names[:8]) + (" ..." if len(done.feature_names) > 8 else "")
    print(
        f"{args.name}: {done.train_rows} train + {done.test_rows} test rows, "
        f"{len(done.feature_names)} features ({shown}), {len(done.class_names)} classes "
        f"({', '.join(done.class_names[:8])}), stored as {done.layout['dtype']}"
    )
    return 0


def mount(parser: Any) -> None:
    """Add the tabular flags and the epilog to the ``data import`` parser."""
    add_tabular_flags(parser)
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
