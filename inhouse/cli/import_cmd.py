"""Models and data from the user's files: ``inhouse models import PATH --kind KIND``, and
``data import --csv`` (text data sets).

``models import`` is common to every kind with an importing part
(:class:`inhouse.kinds.importing.ImportingKind`): the kind checks PATH and registers it.

:mod:`inhouse.cli.models_cmd` and :mod:`inhouse.cli.data_cmd` mount them with
:func:`add_models_import` and :func:`add_data_import`; :func:`add_import_commands` mounts both on
a parser's ``models`` and ``data`` groups (created when absent). Handlers take
``(settings, args)`` like every command.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inhouse.cli.auth import authorize
from inhouse.cli.kind_flags import add_kind_flags, refuse_foreign
from inhouse.config import Settings

if TYPE_CHECKING:
    from inhouse.kinds.importing import ImportingKind

#: ``models import`` without ``--kind`` imports a Hugging Face text encoder, as it always has.
DEFAULT_IMPORT_KIND = "text"


def _importable() -> dict[str, ImportingKind]:
    """The importing part of every kind that has one, by kind name."""
    from inhouse.kinds import kind_named, kinds_with

    return {name: kind_named(name).importing for name in kinds_with("importing")}


def cmd_models_import(settings: Settings, args: argparse.Namespace) -> int:
    """Register a model from the user's own files as a new version, through its kind."""
    from inhouse import services
    from inhouse.config.parse import parse_model
    from inhouse.console import step
    from inhouse.flags import section_overrides
    from inhouse.kinds import kind_named

    importing = kind_named(args.kind).importing  # an unknown or unimportable kind: clear error
    own = importing.options_type
    sections = {name: part.options_type for name, part in _importable().items()}
    refuse_foreign(args, sections, own, owner=f"importing a {args.kind} model")
    options = parse_model(own, section_overrides(args, own), hint=_flag_hint)
    source = Path(args.source).expanduser().resolve()
    authorize(settings, action="model:deploy", resource=args.name, detail=f"import {source}")
    registry = services.registry(settings)
    with step(f"importing {source} as {args.name}"):
        info = importing.import_model(settings, registry, source, name=args.name, options=options)
    print(importing.summary(info))
    return 0


def _flag_hint(loc: tuple[int | str, ...]) -> str | None:
    return f"set it with --{str(loc[0]).replace('_', '-')}" if loc else None


def cmd_data_import(settings: Settings, args: argparse.Namespace) -> int:
    """Create a tabular data set from FILE (:mod:`inhouse.cli.data_import_cmd`), or a text
    data set from a CSV (and optionally a test CSV and a class list)."""
    from inhouse import services
    from inhouse.cli.data_import_cmd import cmd_tabular_import, is_tabular
    from inhouse.console import step
    from inhouse.data import describe
    from inhouse.data.text_import import import_text_csv, read_class_names
    from inhouse.errors import InvalidInputError

    if is_tabular(args):
        return cmd_tabular_import(settings, args)
    args.csv = args.csv or args.file
    if args.csv is None:
        raise InvalidInputError("name the CSV to import: inhouse data import --csv FILE --name N")
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


def add_import_commands(commands: Any) -> None:
    """Mount ``models import`` and ``data import`` on the ``inhouse`` sub-command parsers."""
    add_models_import(_group(commands, "models", "the model registry"))
    add_data_import(_group(commands, "data", "data sets (SQL tables)"))


def add_models_import(actions: Any) -> None:
    """Register ``import`` on the actions of the ``models`` group: every importable kind's
    options are its flags (a flag two kinds share once); ``--help`` lists the kinds."""
    kinds = _importable()
    text = "register a model from your own files as a new version (offline, no remote code)"
    listing = "\n".join(f"  {name}: PATH is {part.source_help}" for name, part in kinds.items())
    imp = actions.add_parser(
        "import",
        help=text,
        description=text,
        epilog=f"kinds that can be imported (--kind):\n{listing}\n"
        "A flag of another kind is refused.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.set_defaults(handler=cmd_models_import)
    imp.add_argument("source", metavar="PATH", help="the model's files (see the kinds below)")
    imp.add_argument(
        "--kind",
        default=DEFAULT_IMPORT_KIND,
        help=f"kind of model: {', '.join(kinds)} (default: {DEFAULT_IMPORT_KIND})",
    )
    imp.add_argument("--name", required=True, help="registry model name")
    add_kind_flags(imp, [part.options_type for part in kinds.values()])


def add_data_import(actions: Any) -> None:
    """Register ``import`` on the actions of the ``data`` group."""
    from inhouse.cli.data_import_cmd import mount

    text = "create a data set from a file: tabular (CSV or Parquet) or text (CSV)"
    dimp = actions.add_parser("import", help=text, description=text)
    dimp.set_defaults(handler=cmd_data_import)
    dimp.add_argument("--csv", help="text: training CSV with a header row")
    dimp.add_argument("--name", required=True, help="data set name")
    dimp.add_argument("--text-column", default="text", help="column with the text (default text)")
    dimp.add_argument(
        "--label", "--label-column", dest="label_column", default="label",
        help="column with the label (default label)",
    )  # fmt: skip
    dimp.add_argument("--test-csv", help="held-out CSV (default: a fixed split of --csv)")
    dimp.add_argument("--classes", help="JSON list of class names (default: sorted labels)")
    dimp.add_argument(
        "--skip-empty",
        action="store_true",
        help="skip (and count) rows whose text or label is empty",
    )
    dimp.add_argument(
        "--test-fraction",
        type=_fraction,
        default=0.2,
        help="held-out share (text: without --test-csv; default 0.2)",
    )
    mount(dimp)


__all__ = [
    "add_data_import",
    "add_models_import",
    "add_import_commands",
    "cmd_data_import",
    "cmd_models_import",
]
