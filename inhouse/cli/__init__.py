"""``inhouse``: the command line. Ray is imported lazily, only by commands that need it.

Every command has ``--help``. Commands that act on the cluster submit Ray jobs or talk to
Serve and print where to look (dashboard, logs).
"""

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from inhouse import local_cluster
from inhouse.cli.commands import (
    cmd_certs_init,
    cmd_cluster_down,
    cmd_cluster_env,
    cmd_cluster_status,
    cmd_cluster_up,
    cmd_compress,
    cmd_data_append,
    cmd_data_list,
    cmd_data_seed,
    cmd_demo,
    cmd_deploy,
    cmd_keys,
    cmd_models_list,
    cmd_models_show,
    cmd_predict,
    cmd_tensorboard,
    cmd_train,
)
from inhouse.config import RaySettings, ServeSettings, Settings, TrainSettings, load_settings
from inhouse.errors import InhouseError
from inhouse.flags import add_section_flags, section_overrides
from inhouse.private_paths import secure_dir


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if args.home:
        overrides["home"] = args.home
    if args.database_url:
        overrides["database_url"] = args.database_url
    for section, cls in (("ray", RaySettings), ("serve", ServeSettings), ("train", TrainSettings)):
        values = section_overrides(args, cls, prefix=f"{section}_" if section != "train" else "")
        if values:
            overrides[section] = values
    settings = load_settings(config_file=args.config, **overrides)
    for noisy in ("ray", "ray.serve", "ray._private.runtime_env"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    secure_dir(settings.home)  # 0700 on every start: the db, keys and tokens live there
    os.environ.update(local_cluster.client_env(settings))
    return settings


# --- parser ----------------------------------------------------------------------------------


def _add(
    sub: Any, name: str, handler: Callable[..., int], help_text: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inhouse",
        description="Train, serve and keep updating private models on your own Ray cluster.",
    )
    parser.add_argument("--config", help="YAML settings file (also INHOUSE_CONFIG)")
    parser.add_argument("--home", help="state directory (default ~/.inhouse; INHOUSE_HOME)")
    parser.add_argument("--database-url", help="SQLAlchemy URL (default SQLite in home)")
    add_section_flags(parser, RaySettings, prefix="ray_")
    add_section_flags(parser, ServeSettings, prefix="serve_")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cluster = commands.add_parser("cluster", help="start, stop or inspect the local Ray cluster")
    cluster_cmds = cluster.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add(cluster_cmds, "up", cmd_cluster_up, "start a single-node Ray cluster (idempotent)")
    _add(cluster_cmds, "down", cmd_cluster_down, "stop the cluster and everything on it")
    _add(cluster_cmds, "status", cmd_cluster_status, "is the cluster up, is Serve answering")
    _add(cluster_cmds, "env", cmd_cluster_env, "print the exports a Ray client needs")

    data = commands.add_parser("data", help="data sets (SQL tables)")
    data_cmds = data.add_subparsers(dest="action", required=True, metavar="ACTION")
    seed = _add(data_cmds, "seed", cmd_data_seed, "create and fill built-in data sets")
    seed.add_argument(
        "names",
        nargs="*",
        default=["digits"],
        choices=["digits", "breast_cancer"],
        help="which data sets (default: digits)",
    )
    _add(data_cmds, "list", cmd_data_list, "list data sets with row counts")
    append = _add(
        data_cmds,
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

    models = commands.add_parser("models", help="the model registry")
    model_cmds = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add(model_cmds, "list", cmd_models_list, "every version of every model")
    show = _add(model_cmds, "show", cmd_models_show, "one version with metrics and lineage")
    show.add_argument("model", help="model name")
    show.add_argument("--version", default="champion", help="number, alias or 'latest'")
    show.add_argument(
        "--training-stats",
        action="store_true",
        help="also show statistics of the training rows (global importance); "
        "needs data:read on the version's data set",
    )

    train = _add(commands, "train", cmd_train, "train a model as a Ray job and register it")
    add_section_flags(train, TrainSettings)

    comp = _add(
        commands,
        "compress",
        cmd_compress,
        "prune + int8 a model version as a Ray job; serve it if it passes the gate",
    )
    comp.add_argument("model", help="model name")
    comp.add_argument("--version", default="champion", help="number, alias or 'latest'")
    comp.add_argument("--prune", type=float, help="fraction of weights set to zero (default 0.9)")
    comp.add_argument(
        "--structured",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="prune whole neurons instead of single weights (default: off)",
    )
    comp.add_argument("--prune-steps", type=int, help="pruning steps (default 3)")
    comp.add_argument(
        "--quantize", choices=["int8", "none"], help="weight quantization (default int8)"
    )
    comp.add_argument(
        "--finetune-epochs", type=int, help="fine-tuning epochs after each pruning step (default 8)"
    )
    comp.add_argument(
        "--max-accuracy-drop",
        type=float,
        help="gate: most accuracy points the compressed model may lose (default 0.5)",
    )
    comp.add_argument(
        "--min-size-ratio",
        type=float,
        help="gate: least parent/compressed stored-size ratio (default none)",
    )
    comp.add_argument(
        "--no-promote",
        dest="promote",
        action="store_false",
        help="register without moving the champion alias",
    )

    dep = _add(commands, "deploy", cmd_deploy, "serve models (default: all registered)")
    dep.add_argument("models", nargs="*", help="model names")
    dep.add_argument("--ref", default="champion", help="version or alias to serve")
    dep.add_argument(
        "--batching",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="dynamic batching of concurrent requests (default: on)",
    )

    pred = _add(commands, "predict", cmd_predict, "send predictions to the served model")
    pred.add_argument("model", help="model name")
    source = pred.add_mutually_exclusive_group()
    source.add_argument("--input", help="JSON list of rows, e.g. '[[0, 1, ...]]'")
    source.add_argument(
        "--from-test",
        type=int,
        default=5,
        metavar="N",
        help="send N rows of the held-out test split (default 5)",
    )

    board = _add(
        commands,
        "tensorboard",
        cmd_tensorboard,
        "start TensorBoard on the runs directory, bound to 127.0.0.1",
    )
    board.add_argument("--port", type=int, default=6006, help="TCP port (default 6006)")

    from inhouse.access.cli import add_access_commands
    from inhouse.cli.coordinator_cmd import add_coordinator_commands
    from inhouse.cli.tune_cmd import add_tune_command
    from inhouse.crypto.cli import add_keys_command
    from inhouse.explain.cli import add_explain_command
    from inhouse.models.cli import add_text_commands
    from inhouse.privacy.cli import add_privacy_commands

    add_explain_command(commands)
    add_text_commands(commands)  # after the data and models groups exist
    add_privacy_commands(commands)
    add_tune_command(commands)
    add_coordinator_commands(commands)
    add_access_commands(commands)
    add_keys_command(commands)
    commands.choices["keys"].set_defaults(handler=cmd_keys)
    certs = commands.add_parser("certs", help="TLS certificates for Serve's HTTPS")
    certs_cmds = certs.add_subparsers(dest="action", required=True, metavar="ACTION")
    certs_init = _add(
        certs_cmds,
        "init",
        cmd_certs_init,
        "make a private CA and a server certificate (keys mode 0600)",
    )
    certs_init.add_argument(
        "--host",
        action="append",
        help="DNS name or IP the certificate covers (repeatable; default localhost and 127.0.0.1)",
    )
    certs_init.add_argument("--force", action="store_true", help="replace existing certificates")

    demo = _add(
        commands,
        "demo",
        cmd_demo,
        "the whole journey: cluster, data, train, serve, then new rows retrained and promoted",
    )
    add_section_flags(demo, TrainSettings)
    demo.add_argument(
        "--no-retrain-act",
        action="store_true",
        help="stop after serving (skip the coordinator retraining on new rows)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``inhouse`` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
        if getattr(args, "access_group", None):
            from inhouse import services
            from inhouse.access.cli import run_access

            return run_access(args, service=services.access(settings))
        code: int = args.handler(settings, args)
        return code
    except InhouseError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
