"""``inhouse coordinator start|status|stop``, ``inhouse retrain`` and ``inhouse rollback``.

State changes (start, stop, manual retrain, rollback) are database writes, so they work whether
or not the actor is running; Ray is imported lazily, only to start, wake or stop the actor.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from typing import Any

from inhouse.cli.auth import authorize
from inhouse.cli.parser import leaf
from inhouse.config import CoordinatorSettings, Settings
from inhouse.coordinator import control

Handler = Callable[[Settings, argparse.Namespace], int]

# flag -> (settings field, type, help)
_START_FLAGS: dict[str, tuple[str, Any, str]] = {
    "--dataset": ("dataset", str, "data set streamed from (default digits)"),
    "--min-rows": ("min_rows", int, "retrain after this many new training rows (default 200)"),
    "--interval": ("interval_s", float, "retrain at least every this many seconds"),
    "--cron": ("cron", str, "cron schedule of retrains, e.g. '0 3 * * *'"),
    "--drift-threshold": ("drift_threshold", float, "retrain when a feature's drift exceeds it"),
    "--drift-test": ("drift_test", str, "psi (default) or ks"),
    "--epochs": ("epochs", int, "epochs of each incremental retrain (default 8)"),
    "--lr": ("lr", float, "learning rate of the warm start (default 3e-3)"),
    "--replay-ratio": ("replay_ratio", float, "older rows replayed per new row (default 4)"),
    "--batch-size": ("batch_size", int, "rows per step of each retrain (default 128)"),
    "--text-method": (
        "text_method",
        str,
        "text models: lora (default; LoRA adapters + head) or head (the head only)",
    ),
    "--trainable-layers": ("trainable_layers", int, "train only the last N Linear layers"),
    "--max-accuracy-drop": ("max_accuracy_drop", float, "gate: points lost allowed (0.5)"),
    "--max-latency-ratio": ("max_latency_ratio", float, "gate: slowdown allowed (3.0)"),
    "--min-importance-spearman": (
        "min_importance_spearman",
        float,
        "gate: flag for review below this rank correlation (0.5)",
    ),
    "--poll": ("poll_s", float, "seconds between stream polls (default 2)"),
    "--canary-share": (
        "canary_share",
        float,
        "share of requests a promoted candidate serves first (default 0.1; 0: promote at once)",
    ),
    "--canary-window": ("canary_window_s", float, "seconds the canary is watched (default 30)"),
    "--canary-max-error-rate": (
        "canary_max_error_rate",
        float,
        "roll the canary back above this share of failed requests (default 0.01)",
    ),
    "--max-dp-failures": (
        "max_dp_failures",
        int,
        "stop after this many DP retrains failed in a row (each one spends; default 3)",
    ),
    "--canary-max-latency-ratio": (
        "canary_max_latency_ratio",
        float,
        "roll back when the canary's p95 is this many times the champion's (default 2)",
    ),
}


def _connect(settings: Settings) -> None:
    from inhouse import local_cluster
    from inhouse.errors import UnavailableError

    if not local_cluster.dashboard_up(settings):
        raise UnavailableError(
            f"no cluster answers at {settings.ray.dashboard_url}; run `inhouse cluster up`"
        )
    import ray

    if not ray.is_initialized():
        ray.init(
            address=f"127.0.0.1:{settings.ray.gcs_port}",
            logging_level=logging.ERROR,
            log_to_driver=False,
        )


def cmd_start(settings: Settings, args: argparse.Namespace) -> int:
    values: dict[str, Any] = {"model": args.model}
    for field, _type, _help in _START_FLAGS.values():
        value = getattr(args, field)
        if value is not None:
            values[field] = value
    if args.no_min_rows:
        values["min_rows"] = None
    if args.dp:
        values["dp"] = True
    cs = CoordinatorSettings.parse(values)
    authorize(settings, action="train:submit", resource=args.model, detail="coordinator start")
    from inhouse import services

    state = control.start(services.registry(settings), cs)
    _connect(settings)
    import ray

    from inhouse.actors.coordinator import start_actor

    actor = start_actor(settings, args.model)
    info = ray.get(actor.info.remote(), timeout=120)
    print(
        f"coordinator of {args.model} running (actor coordinator-{args.model}, pid {info['pid']}); "
        f"watermark: row {state.watermark}, champion v{state.champion_version}"
    )
    print(f"watch it in the Ray dashboard: {settings.ray.dashboard_url}/#/actors")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from inhouse import services

    report = control.status(services.engine(settings), args.model, history=args.history)
    try:
        _connect(settings)
        import ray

        from inhouse.actors.coordinator import find_actor

        actor = find_actor(args.model)
        report["actor"] = None if actor is None else ray.get(actor.info.remote(), timeout=30)
    except Exception as exc:  # no cluster: the database still answers
        report["actor"] = f"unreachable: {exc}"
    print(json.dumps(report, indent=2, default=str))
    return 0


def cmd_stop(settings: Settings, args: argparse.Namespace) -> int:
    from inhouse import services

    authorize(settings, action="train:submit", resource=args.model, detail="coordinator stop")
    state = control.stop(services.engine(settings), args.model)
    _connect(settings)
    import ray

    from inhouse.actors.coordinator import find_actor

    actor = find_actor(args.model)
    if actor is not None:
        ray.kill(actor, no_restart=True)
    print(f"coordinator of {args.model} stopped at watermark row {state.watermark}")
    return 0


def cmd_retrain(settings: Settings, args: argparse.Namespace) -> int:
    from inhouse import services

    authorize(settings, action="train:submit", resource=args.model, detail="manual retrain")
    request = control.request_retrain(services.engine(settings), args.model)
    try:
        _connect(settings)
        from inhouse.actors.coordinator import find_actor

        actor = find_actor(args.model)
        if actor is not None:
            actor.wake.remote()
    except Exception:  # the request is durable: a (re)started actor sees it
        pass
    print(f"retrain of {args.model} requested (request {request}); see `coordinator status`")
    return 0


def cmd_rollback(settings: Settings, args: argparse.Namespace) -> int:
    from inhouse import services

    authorize(settings, action="model:deploy", resource=args.model, detail="rollback")
    engine = services.engine(settings)
    aborted = control.abort_canary(engine, args.model, actor="cli")
    if aborted is not None:
        print(f"{args.model}: canary of v{aborted} stopped; the champion keeps serving")
        return 0
    was, now = control.rollback(engine, args.model)
    print(f"{args.model}: champion rolled back from v{was} to v{now}")
    return 0


def _leaf(sub: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    parser = leaf(sub, name, handler, help_text)
    parser.add_argument("model", help="registry model name")
    return parser


def add_parser(commands: Any) -> None:
    """Register ``coordinator …``, ``retrain`` and ``rollback`` on the ``inhouse`` sub-parsers."""
    help_text = "keep a model up to date from its data stream (retrain, gate, promote)"
    group = commands.add_parser("coordinator", help=help_text, description=help_text)
    acts = group.add_subparsers(dest="coordinator_action", required=True, metavar="ACTION")
    start = _leaf(acts, "start", cmd_start, "start (or resume) the model's coordinator actor")
    for flag, (field, kind, text) in _START_FLAGS.items():
        start.add_argument(flag, dest=field, type=kind, default=None, help=text)
    start.add_argument("--no-min-rows", action="store_true", help="turn the row trigger off")
    start.add_argument("--dp", action="store_true", help="DP-SGD retrains charged to the ledger")
    status = _leaf(acts, "status", cmd_status, "state, actor and recent history (JSON)")
    status.add_argument("--history", type=int, default=10, help="events shown (default 8)")
    _leaf(acts, "stop", cmd_stop, "stop the coordinator (its state is kept)")
    _leaf(commands, "retrain", cmd_retrain, "ask the coordinator to retrain now")
    _leaf(
        commands,
        "rollback",
        cmd_rollback,
        "stop a running canary, or else make the previous champion the champion again",
    )
