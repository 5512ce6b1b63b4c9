"""Every kind's own options as flags of one common command (``train``, ``models import``).

A command that acts on models of any kind takes the union of the kinds' option flags (a flag
two kinds share is added once); once the kind is known, a flag that only other kinds have is
refused by name (:func:`refuse_foreign`), and the kind's own are read into its options model.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping

from pydantic import BaseModel

from inhouse.errors import ConfigError
from inhouse.flags import add_section_flags


def add_kind_flags(parser: argparse.ArgumentParser, sections: Iterable[type[BaseModel]]) -> None:
    """Add every field of every section in ``sections`` as a flag, in order; a flag already on
    ``parser`` (an earlier section's, or the command's own) is not added again."""
    for section in sections:
        scratch = argparse.ArgumentParser(add_help=False)
        add_section_flags(scratch, section)
        for action in scratch._actions:  # argparse has no public way to copy an option
            if not set(action.option_strings) & set(parser._option_string_actions):
                parser._add_action(action)


def given_fields(args: argparse.Namespace, sections: Iterable[type[BaseModel]]) -> set[str]:
    """The fields of ``sections`` whose flags were given (an unset flag parses as None)."""
    names = {name for section in sections for name in section.model_fields}
    return {name for name in names if getattr(args, name, None) is not None}


def refuse_foreign(
    args: argparse.Namespace,
    sections: Mapping[str, type[BaseModel]],
    own: type[BaseModel],
    *,
    owner: str,
) -> None:
    """Refuse the flags given that only other kinds' ``sections`` have: a
    :class:`ConfigError` ``<owner> has no --a, --b``."""
    foreign = given_fields(args, sections.values()) - set(own.model_fields)
    if foreign:
        flags = ", ".join("--" + name.replace("_", "-") for name in sorted(foreign))
        raise ConfigError(f"{owner} has no {flags}")
