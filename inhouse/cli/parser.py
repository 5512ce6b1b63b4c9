"""The ``inhouse`` parser: command groups are listed by name and built only when invoked.

:data:`GROUPS` names each top-level command, the module under ``inhouse.cli`` that builds it
and the line ``inhouse --help`` shows for it. ``inhouse --help`` lists them all without
importing any; ``inhouse models list`` imports ``inhouse.cli.models_cmd`` and nothing else of
the command line, so a command pays only for what it uses (never torch or Ray to read the
database). Each group module has ``add_parser(subparsers)``, which registers its commands;
a leaf command's handler, set with :func:`leaf`, is ``handler(settings, args) -> exit code``.

The global options (``--home``, ``--serve-port``, ...) are accepted before the command, as
``inhouse --help`` documents them, and also after it.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from inhouse import __version__
from inhouse.config import FLAG_PREFIXES, LLMSettings, RaySettings, ServeSettings
from inhouse.flags import add_section_flags

Handler = Callable[..., int]

# command -> (module under inhouse.cli, help); in the order ``inhouse --help`` lists them.
GROUPS: dict[str, tuple[str, str]] = {
    "cluster": ("cluster_cmd", "start, stop or inspect the local Ray cluster"),
    "data": ("data_cmd", "data sets (SQL tables)"),
    "models": ("models_cmd", "the model registry"),
    "train": ("jobs_cmd", "train a model as a Ray job and register it"),
    "compress": (
        "jobs_cmd",
        "prune + int8 a model version as a Ray job; serve it if it passes the gate",
    ),
    "deploy": ("jobs_cmd", "serve models (default: all registered)"),
    "predict": ("jobs_cmd", "send predictions to the served model"),
    "tensorboard": ("cluster_cmd", "start TensorBoard on the runs directory, bound to 127.0.0.1"),
    "explain": (
        "explain_cmd",
        "explain predictions of a registered model locally (no cluster needed)",
    ),
    "privacy": (
        "privacy_cmd",
        "differential-privacy budgets, the ledger of DP runs, membership audits",
    ),
    "tune": ("tune_cmd", "search hyperparameters (Ray Tune, ASHA) and register the best trial"),
    "coordinator": (
        "coordinator_cmd",
        "keep a model up to date from its data stream (retrain, gate, promote)",
    ),
    "retrain": ("coordinator_cmd", "ask the coordinator to retrain now"),
    "rollback": (
        "coordinator_cmd",
        "stop a running canary, or else make the previous champion the champion again",
    ),
    "principals": ("access_cmd", "users and service accounts, roles and grants"),
    "tokens": ("access_cmd", "API tokens that clients send as 'Bearer <token>'"),
    "audit": ("access_cmd", "the hash-chained audit log"),
    "access": ("access_cmd", "the access policy as a YAML file (GitOps)"),
    "keys": ("keys_cmd", "manage the master keys that encrypt artifacts"),
    "certs": ("cluster_cmd", "TLS certificates for Serve's HTTPS"),
    "demo": (
        "demo",
        "the whole journey: cluster, data, train, serve, then new rows retrained and promoted",
    ),
}
_SECTIONS = (("ray", RaySettings), ("serve", ServeSettings), ("llm", LLMSettings))
_AFTER_NOTE = (
    "Global options (--config, --home, --database-url, --ray-*, --serve-*, --llm-*: see "
    "`inhouse --help`) may also follow the command."
)


if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # generic only to the type checker
    _SubParsers = argparse._SubParsersAction


class LazyCommands(_SubParsers):
    """Sub-commands whose parsers a module builds when one of its commands is invoked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: dict[str, str] = {}  # command -> module that builds it

    def add_lazy(self, name: str, module: str, help_text: str) -> None:
        """List ``name`` (in ``--help`` and as a choice); ``module`` builds it on first use."""
        self.add_parser(name, help=help_text)
        self._pending[name] = module

    def load(self, name: str) -> None:
        """Build the commands of ``name``'s module, once, and let them take the global options."""
        module = self._pending.get(name)
        if module is None:
            return
        owned = [command for command, owner in self._pending.items() if owner == module]
        for command in owned:
            del self._pending[command], self._name_parser_map[command]
        listing = list(self._choices_actions)
        importlib.import_module(f"inhouse.cli.{module}").add_parser(self)
        self._choices_actions[:] = listing  # the module's own lines repeat GROUPS
        for command in owned:
            if command not in self._name_parser_map:
                raise RuntimeError(f"inhouse.cli.{module}.add_parser did not add {command!r}")
            _accept_global_flags(self._name_parser_map[command])

    def load_all(self) -> None:
        """Build every command (tests, the eager baseline of ``benchmarks/bench_cli.py``)."""
        for name in list(self._pending):
            self.load(name)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        if values:
            self.load(str(values[0]))
        super().__call__(parser, namespace, values, option_string)


def leaf(sub: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    """Add command ``name`` to the sub-parsers ``sub``, run by ``handler(settings, args)``."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    return parser


def add_global_flags(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """``--config``, ``--home``, ``--database-url``, ``--ray-*``, ``--serve-*`` and ``--llm-*``.

    With ``suppress`` (the copies after a command) an option given leaves its attribute
    alone unless given again, and ``--help`` does not repeat it.
    """

    def text(line: str) -> str:
        return argparse.SUPPRESS if suppress else line

    unset = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--config", default=unset, help=text("YAML settings file (also INHOUSE_CONFIG)")
    )
    parser.add_argument(
        "--home", default=unset, help=text("state directory (default ~/.inhouse; INHOUSE_HOME)")
    )
    parser.add_argument(
        "--database-url", default=unset, help=text("SQLAlchemy URL (default SQLite in home)")
    )
    for section, cls in _SECTIONS:
        add_section_flags(parser, cls, prefix=FLAG_PREFIXES[section], suppress=suppress)


def _accept_global_flags(parser: argparse.ArgumentParser) -> None:
    """Give every leaf command under ``parser`` the global options too."""
    # argparse keeps no public handle on a parser's sub-commands
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        add_global_flags(parser, suppress=True)
        parser.epilog = f"{parser.epilog}\n\n{_AFTER_NOTE}" if parser.epilog else _AFTER_NOTE
        return
    for group in groups:
        for child in {id(p): p for p in group._name_parser_map.values()}.values():
            _accept_global_flags(child)


def commands_of(parser: argparse.ArgumentParser) -> LazyCommands:
    """The top-level commands of a parser made by :func:`build_parser`."""
    return next(a for a in parser._actions if isinstance(a, LazyCommands))


def build_parser() -> argparse.ArgumentParser:
    """The ``inhouse`` parser; a command group is imported when the arguments invoke it."""
    parser = argparse.ArgumentParser(
        prog="inhouse",
        # A command's own flag (``demo --llm``) must never be read as a prefix of a global one.
        allow_abbrev=False,
        description="Train, serve and keep updating private models on your own Ray cluster.",
        epilog="Run `inhouse COMMAND --help` for a command's own options. The options above "
        "may also follow the command (`inhouse cluster env --serve-port 9000`).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_global_flags(parser)
    commands = cast(
        LazyCommands,
        parser.add_subparsers(
            dest="command", required=True, metavar="COMMAND", action=LazyCommands
        ),
    )
    for name, (module, help_text) in GROUPS.items():
        commands.add_lazy(name, module, help_text)
    return parser
