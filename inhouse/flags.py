"""Command-line flags generated from pydantic settings sections, so ``--help`` always
documents every field with its description and default, and flags map 1:1 onto settings."""

from __future__ import annotations

import argparse
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel


def _scalar_type(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation


def _own_fields_first(section: type[BaseModel]) -> list[tuple[str, Any]]:
    """The section's fields, those it declares before those it inherits (the DP fields)."""
    inherited = {
        name
        for base in section.__mro__[1:]
        if isinstance(base, type) and issubclass(base, BaseModel)
        for name in base.model_fields
    }
    fields = list(section.model_fields.items())
    return [f for f in fields if f[0] not in inherited] + [f for f in fields if f[0] in inherited]


def add_section_flags(
    parser: argparse.ArgumentParser,
    section: type[BaseModel],
    *,
    prefix: str = "",
    suppress: bool = False,
) -> None:
    """Add ``--<prefix><field>`` for every field of ``section`` (default: leave unset).

    Args:
        parser: where the flags go.
        section: the settings model whose fields become flags.
        prefix: prepended to each field name (``serve_`` gives ``--serve-port``).
        suppress: a copy of flags documented elsewhere: no attribute unless given (so it
            does not mask the same flag given earlier) and no line in ``--help``.
    """
    unset = argparse.SUPPRESS if suppress else None
    for name, field in _own_fields_first(section):
        flag = "--" + (prefix + name).replace("_", "-")
        help_text = (field.description or name.replace("_", " ")).rstrip(".")
        default = field.get_default(call_default_factory=True)
        help_text = argparse.SUPPRESS if suppress else f"{help_text} (default: {default})"
        dest = (prefix + name).replace("-", "_")
        kind = _scalar_type(field.annotation)
        if kind is bool:
            parser.add_argument(
                flag,
                dest=dest,
                action=argparse.BooleanOptionalAction,
                default=unset,
                help=help_text,
            )
        elif get_origin(kind) is list:
            (item,) = get_args(kind)
            parser.add_argument(
                flag,
                dest=dest,
                type=item,
                nargs="+",
                default=unset,
                help=help_text,
                metavar=name.upper(),
            )
        else:
            parser.add_argument(
                flag,
                dest=dest,
                type=kind if kind in (int, float, str) else str,
                default=unset,
                help=help_text,
                metavar=name.upper(),
            )


def section_overrides(
    args: argparse.Namespace, section: type[BaseModel], *, prefix: str = ""
) -> dict[str, Any]:
    """The flags the user actually gave, as a dict for ``load_settings(section=...)``."""
    values = {}
    for name in section.model_fields:
        value = getattr(args, (prefix + name).replace("-", "_"), None)
        if value is not None:
            values[name] = value
    return values


def section_argv(values: BaseModel) -> list[str]:
    """The flags that give every set field of ``values``: what :func:`add_section_flags` parses
    back into the same values (a path made absolute, for a job run in another directory)."""
    argv: list[str] = []
    for name, value in values:
        flag = "--" + name.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        elif isinstance(value, Path):
            argv += [flag, str(value.resolve())]
        else:
            argv += [flag, str(value)]
    return argv
