"""Text models and data from files: ``inhouse models import <dir>``, ``data import --csv``.

:mod:`inhouse.cli.models_cmd` and :mod:`inhouse.cli.data_cmd` mount them with
:func:`add_models_import` and :func:`add_data_import`; :func:`add_text_commands` mounts both on
a parser's ``models`` and ``data`` groups (created when absent). Handlers take
``(settings, args)`` like every command.
"""

from __future__ import annotations

import argparse
from typing import Any

from inhouse.cli.auth import authorize
from inhouse.config import Settings


def cmd_models_import(settings: Settings, args: argparse.Namespace) -> int:
    """Copy a local Hugging Face model directory into the registry (encrypted with a key ring)."""
    from inhouse import services
    from inhouse.console import step
    from inhouse.kinds.text.versions import import_model_dir
    from inhouse.models.hf import check_model_dir

    checked = check_model_dir(args.directory)  # refuse before anything is recorded
    authorize(settings, action="model:deploy", resource=args.name, detail=f"import {checked.path}")
    registry = services.registry(settings)
    with step(f"importing {checked.path} as {args.name}"):
        info = import_model_dir(registry, checked.path, name=args.name, max_length=args.max_length)
    sealed = "encrypted" if info.encrypted else "NOT encrypted (encryption at rest is off)"
    print(
        f"{info.model} v{info.version}: {checked.model_type} encoder, "
        f"{info.metrics['parameters']:,} parameters, {info.size_bytes:,} bytes, {sealed}"
    )
    return 0


def cmd_data_import(settings: Settings, args: argparse.Namespace) -> int:
    """Create a text data set from a CSV (and optionally a test CSV and a class list)."""
    from inhouse import services
    from inhouse.console import step
    from inhouse.data import describe
    from inhouse.data.text_import import import_text_csv, read_class_names

    authorize(settings, action="data:write", resource=args.name, detail=f"import {args.csv}")
    classes = read_class_names(args.classes) if args.classes else None
    engine = services.engine(settings)
    with step(f"importing {args.csv} into data set {args.name}"):
        result = import_text_csv(
            engine,
            name=args.name,
            csv_path=args.csv,
            text_column=args.text_column,
            label_column=args.label_column,
            test_csv=args.test_csv,
            class_names=classes,
            test_fraction=args.test_fraction,
            skip_empty=args.skip_empty,
        )
    info = describe(engine, args.name)
    print(
        f"{info.name}: {info.train_rows} train + {info.test_rows} test texts, "
        f"{len(info.class_names)} classes (ids {info.first_id}..{info.last_id})"
        + (
            f"; skipped {result.skipped_empty} rows with an empty text or label"
            if result.skipped_empty
            else ""
        )
    )
    return 0


def _fraction(value: str) -> float:
    number = float(value)
    if not 0.0 <= number < 1.0:
        raise argparse.ArgumentTypeError("must be in [0, 1)")
    return number


def _group(commands: Any, name: str, help_text: str) -> Any:
    """The sub-command action of group ``name`` (``models``, ``data``), created if absent."""
    parser = commands.choices.get(name) or commands.add_parser(name, help=help_text)
    for action in parser._actions:  # argparse keeps no public handle on a parser's subparsers
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def add_text_commands(commands: Any) -> None:
    """Mount ``models import`` and ``data import`` on the ``inhouse`` sub-command parsers."""
    add_models_import(_group(commands, "models", "the model registry"))
    add_data_import(_group(commands, "data", "data sets (SQL tables)"))


def add_models_import(actions: Any) -> None:
    """Register ``import`` on the actions of the ``models`` group."""
    text = "copy a local Hugging Face model directory into the registry (offline, no remote code)"
    imp = actions.add_parser("import", help=text, description=text)
    imp.set_defaults(handler=cmd_models_import)
    imp.add_argument("directory", help="config.json + model.safetensors + tokenizer files")
    imp.add_argument("--name", required=True, help="registry model name")
    imp.add_argument("--max-length", type=int, default=128, help="tokens per text (default 128)")


def add_data_import(actions: Any) -> None:
    """Register ``import`` on the actions of the ``data`` group."""
    text = "create a text data set from a CSV file (one row per text, with its label)"
    dimp = actions.add_parser("import", help=text, description=text)
    dimp.set_defaults(handler=cmd_data_import)
    dimp.add_argument("--csv", required=True, help="training CSV with a header row")
    dimp.add_argument("--name", required=True, help="data set name")
    dimp.add_argument("--text-column", default="text", help="column with the text (default text)")
    dimp.add_argument("--label-column", default="label", help="column with the label")
    dimp.add_argument("--test-csv", help="held-out CSV (default: a fixed split of --csv)")
    dimp.add_argument("--classes", help="JSON list of class names (default: sorted labels)")
    dimp.add_argument(
        "--skip-empty",
        action="store_true",
        help="skip (and count) rows whose text or label is empty",
    )
    dimp.add_argument(
        "--test-fraction", type=_fraction, default=0.2, help="test share without --test-csv"
    )


__all__ = [
    "add_data_import",
    "add_models_import",
    "add_text_commands",
    "cmd_data_import",
    "cmd_models_import",
]
