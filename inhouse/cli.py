"""``inhouse``: the command line. Ray is imported lazily, only by commands that need it.

Every command has ``--help``. Commands that act on the cluster submit Ray jobs or talk to
Serve and print where to look (dashboard, logs).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inhouse import local_cluster
from inhouse.config import RaySettings, ServeSettings, Settings, TrainSettings, load_settings
from inhouse.console import EPOCH_MARKER, RESULT_MARKER, print_table, progress, step
from inhouse.errors import InhouseError, UnavailableError
from inhouse.flags import add_section_flags, section_overrides

PROJECT_ROOT = Path(__file__).resolve().parent.parent


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
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ.update(local_cluster.client_env(settings))
    return settings


def _engine(settings: Settings) -> Any:
    from inhouse.db import get_engine

    return get_engine(settings.db_url)


def _registry(settings: Settings) -> Any:
    from inhouse import services

    return services.registry(settings)


def authorize(settings: Settings, *, action: str, resource: str, detail: str = "") -> None:
    """Check and audit an operation before doing it.

    With ``$INHOUSE_TOKEN`` set (automation, other users) the token must hold the permission
    (401/403 otherwise). Without it the caller is the local owner of the state directory,
    the trust boundary of a single machine, and the action is recorded under that name.
    """
    from inhouse import services
    from inhouse.access.cli import local_actor

    service = services.access(settings)
    token = os.environ.get("INHOUSE_TOKEN", "").strip()
    if token:
        service.check(f"Bearer {token}", action=action, resource=resource, request_id=None)
        return
    service.record(
        principal=local_actor(),
        action=action,
        resource=resource,
        outcome="allow",
        detail=detail or None,
    )


# --- cluster -------------------------------------------------------------------------------


def cmd_cluster_up(settings: Settings, _args: argparse.Namespace) -> int:
    with step("starting the local Ray cluster (token auth on)"):
        started = local_cluster.start(settings)
    print(
        ("started" if started else "already running") + f": dashboard {settings.ray.dashboard_url}"
    )
    print(f"token: {settings.ray_token_path} (mode 0600)")
    return 0


def cmd_cluster_down(settings: Settings, _args: argparse.Namespace) -> int:
    with step("stopping the local Ray cluster and Serve"):
        local_cluster.stop(settings)
    print("stopped")
    return 0


def cmd_cluster_status(settings: Settings, _args: argparse.Namespace) -> int:
    up = local_cluster.dashboard_up(settings)
    print(f"cluster: {'up' if up else 'down'}  dashboard {settings.ray.dashboard_url}")
    if up:
        import httpx

        try:
            ready = httpx.get(f"{settings.serve_url}/v2/health/ready", timeout=2).status_code
            print(f"serve: {settings.serve_url} (/v2/health/ready -> {ready})")
        except httpx.HTTPError:
            print(f"serve: not answering at {settings.serve_url}; run `inhouse deploy`")
    return 0 if up else 3


def cmd_cluster_env(settings: Settings, _args: argparse.Namespace) -> int:
    for key, value in local_cluster.client_env(settings).items():
        print(f"export {key}={value}")
    return 0


# --- data and models -------------------------------------------------------------------------


def cmd_data_seed(settings: Settings, args: argparse.Namespace) -> int:
    from inhouse.data import seed

    for name in args.names:
        authorize(settings, action="data:write", resource=name, detail="seed")
        with step(f"seeding {name}"):
            info, created = seed(_engine(settings), name)
        state = "created" if created else "already there"
        print(
            f"{name}: {state}, {info.train_rows} train + {info.test_rows} test rows "
            f"(ids {info.first_id}..{info.last_id}) in {settings.db_url}"
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


def cmd_models_list(settings: Settings, _args: argparse.Namespace) -> int:
    registry = _registry(settings)
    rows = []
    for model in registry.models():
        aliases = registry.aliases(model)
        for info in registry.versions(model):
            tags = ",".join(a for a, v in aliases.items() if v == info.version)
            rows.append(
                [
                    model,
                    info.version,
                    tags,
                    f"{info.metrics.get('test_accuracy', 0):.4f}",
                    info.lineage.get("dataset", ""),
                    info.created_at.strftime("%F %T"),
                ]
            )
    print_table(["model", "version", "aliases", "test acc", "data set", "created"], rows)
    return 0


def cmd_models_show(settings: Settings, args: argparse.Namespace) -> int:
    registry = _registry(settings)
    info = registry.get(args.model, args.version)
    print(
        json.dumps(
            {
                "model": info.model,
                "version": info.version,
                "created_at": str(info.created_at),
                "aliases": [
                    a for a, v in registry.aliases(args.model).items() if v == info.version
                ],
                "sha256": info.sha256,
                "size_bytes": info.size_bytes,
                "metrics": info.metrics,
                "spec": {k: v for k, v in info.spec.items() if k != "feature_names"},
                "lineage": info.lineage,
                "path": str(info.path),
            },
            indent=2,
            default=str,
        )
    )
    return 0


# --- training, serving, prediction -----------------------------------------------------------


def _train_args(settings: Settings) -> list[str]:
    cfg = settings.train
    argv = [
        "--dataset",
        cfg.dataset,
        "--model",
        cfg.model,
        "--epochs",
        str(cfg.epochs),
        "--batch-size",
        str(cfg.batch_size),
        "--lr",
        str(cfg.lr),
        "--num-workers",
        str(cfg.num_workers),
        "--seed",
        str(cfg.seed),
        "--max-failures",
        str(cfg.max_failures),
        "--hidden",
        *map(str, cfg.hidden),
    ]
    argv.append("--use-gpu" if cfg.use_gpu else "--no-use-gpu")
    argv.append("--promote" if cfg.promote else "--no-promote")
    argv.append("--compress" if cfg.compress else "--no-compress")
    return argv


def run_job(settings: Settings, module: str, argv: list[str], *, epochs: int = 0) -> dict[str, Any]:
    """Submit ``python -m <module> <argv>`` as a Ray job, follow it, return its result line."""
    import shlex

    from ray.job_submission import JobStatus, JobSubmissionClient

    if not local_cluster.dashboard_up(settings):
        raise UnavailableError(
            f"no cluster answers at {settings.ray.dashboard_url}; run `inhouse cluster up`"
        )
    client = JobSubmissionClient(settings.ray.dashboard_url)
    env = local_cluster.client_env(settings)
    env.pop("RAY_ADDRESS")
    revision = os.popen(
        f"git -C {shlex.quote(str(PROJECT_ROOT))} rev-parse --short HEAD 2>/dev/null"
    )
    env["INHOUSE_CODE_REVISION"] = revision.read().strip() or "unknown"
    job_id = client.submit_job(
        entrypoint=shlex.join(["python", "-m", module, *argv]),
        runtime_env={
            "working_dir": str(PROJECT_ROOT),
            "env_vars": env,
            "excludes": [".venv", ".git", "benchmarks/results"],
        },
    )
    print(f"submitted Ray job {job_id}; watch it at {settings.ray.dashboard_url}/#/jobs/{job_id}")
    seen, result, epochs_done = 0, None, 0
    bar = progress(total=epochs, desc="epochs", unit="epoch") if epochs else None
    while True:
        status = client.get_job_status(job_id)
        logs = client.get_job_logs(job_id)
        for line in logs.splitlines()[seen:]:
            if EPOCH_MARKER in line and bar is not None:
                metrics = json.loads(line.split(EPOCH_MARKER, 1)[1])
                if metrics["epoch"] + 1 > epochs_done:  # Ray may echo a line twice
                    bar.update(metrics["epoch"] + 1 - epochs_done)
                    epochs_done = metrics["epoch"] + 1
                    bar.set_postfix(
                        loss=f"{metrics['train_loss']:.3f}",
                        test_acc=f"{metrics['test_accuracy']:.3f}",
                    )
            elif RESULT_MARKER in line:
                result = json.loads(line.split(RESULT_MARKER, 1)[1])
        seen = len(logs.splitlines())
        if status in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
            break
        time.sleep(1.0)
    if bar is not None:
        bar.close()
    if status != JobStatus.SUCCEEDED or result is None:
        tail = "\n".join(logs.splitlines()[-15:])
        raise UnavailableError(f"job {job_id} {status}; last log lines:\n{tail}")
    summary: dict[str, Any] = result
    return summary


def cmd_train(settings: Settings, _args: argparse.Namespace) -> int:
    authorize(
        settings,
        action="train:submit",
        resource=settings.train.model,
        detail=f"data set {settings.train.dataset}",
    )
    result = run_job(settings, "jobs.train", _train_args(settings), epochs=settings.train.epochs)
    print(
        f"registered {result['model']} v{result['version']}: test accuracy "
        f"{result['test_accuracy']:.4f}"
    )
    if result["compressed"]:
        print(f"compressed v{result['compressed']['version']}: {result['compressed']['message']}")
    if result["served_version"] is not None:
        print(f"champion (served): v{result['served_version']}")
    print(f"TensorBoard: {result['tensorboard']}")
    return 0


def _compress_args(args: argparse.Namespace) -> list[str]:
    argv = ["--model", args.model, "--version", args.version]
    for flag, value in (
        ("--prune", args.prune),
        ("--prune-steps", args.prune_steps),
        ("--quantize", args.quantize),
        ("--finetune-epochs", args.finetune_epochs),
        ("--max-accuracy-drop", args.max_accuracy_drop),
        ("--min-size-ratio", args.min_size_ratio),
    ):
        if value is not None:
            argv += [flag, str(value)]
    if args.structured is not None:
        argv.append("--structured" if args.structured else "--no-structured")
    if not args.promote:
        argv.append("--no-promote")
    return argv


def cmd_compress(settings: Settings, args: argparse.Namespace) -> int:
    authorize(settings, action="model:deploy", resource=args.model, detail="compress")
    result = run_job(settings, "jobs.compress", _compress_args(args))
    print(result["report_markdown"])
    print(
        f"registered {result['model']} v{result['version']} (compressed from "
        f"v{result['parent_version']}): {result['message']}"
    )
    return 0


def deploy(
    settings: Settings, models: list[str], *, ref: str = "champion", batching: bool = True
) -> None:
    """Deploy (or update) the Serve application for ``models`` on the running cluster."""
    import ray
    from ray import serve

    from serve.app import APP_NAME, ServeArgs, build_app

    ray.init(
        address=f"127.0.0.1:{settings.ray.gcs_port}",
        logging_level=logging.ERROR,
        log_to_driver=False,
    )
    try:
        http: dict[str, Any] = {"host": settings.serve.host, "port": settings.serve.port}
        if settings.tls:
            http.update(
                ssl_certfile=str(settings.security.tls_certfile),
                ssl_keyfile=str(settings.security.tls_keyfile),
            )
        serve.start(http_options=http)
        args = ServeArgs(
            models=models,
            ref=ref,
            home=str(settings.home),
            database_url=settings.database_url,
            batching=batching,
        )
        serve.run(build_app(args), name=APP_NAME, route_prefix="/")
    finally:
        ray.shutdown()


def cmd_deploy(settings: Settings, args: argparse.Namespace) -> int:
    models = args.models or _registry(settings).models()
    if not models:
        raise UnavailableError("no model in the registry; run `inhouse train` first")
    for model in models:
        authorize(settings, action="model:deploy", resource=model, detail=f"ref {args.ref}")
    with step(f"deploying {', '.join(models)} on Ray Serve"):
        deploy(settings, models, ref=args.ref, batching=args.batching)
    print(
        f"serving at {settings.serve_url}/v2/models/<name>/infer (OIP v2) and "
        f"/v1/models/<name>:predict (KServe v1)"
    )
    return 0


def cmd_predict(settings: Settings, args: argparse.Namespace) -> int:
    from inhouse.client import predict_rows

    return predict_rows(settings, args.model, inline=args.input, from_test=args.from_test)


def cmd_tensorboard(settings: Settings, args: argparse.Namespace) -> int:
    import subprocess

    binary = Path(sys.executable).parent / "tensorboard"
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    print(f"TensorBoard on {settings.runs_dir}: http://127.0.0.1:{args.port} (Ctrl-C to stop)")
    command = [
        str(binary),
        "--logdir",
        str(settings.runs_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
    ]
    return subprocess.run(command, check=False).returncode


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    from inhouse.crypto.cli import run_keys

    args.default_key_dir = str(settings.key_dir)
    if args.keys_action != "list":
        authorize(settings, action="keys:admin", resource="*", detail=f"keys {args.keys_action}")
    if args.keys_action == "rotate" and not args.rewrap:
        # Re-wrap every artifact we wrote: registry versions and training checkpoints.
        args.rewrap = [str(p) for p in (settings.registry_dir, settings.runs_dir) if p.exists()]
    return run_keys(args)


def cmd_certs_init(settings: Settings, args: argparse.Namespace) -> int:
    from inhouse.tls import init_certificates

    hosts = args.host or ["localhost", "127.0.0.1"]
    made = init_certificates(settings.tls_dir, hosts=hosts, force=args.force)
    print(f"private CA {made.ca_cert}; server certificate {made.server_cert} for {hosts}")
    print("serve over HTTPS (then `inhouse deploy`; restart Serve if it runs plain HTTP):")
    print(f"  export INHOUSE_SECURITY__TLS_CERTFILE={made.server_cert}")
    print(f"  export INHOUSE_SECURITY__TLS_KEYFILE={made.server_key}")
    print(f"clients trust {made.ca_cert} (curl --cacert, httpx verify=)")
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from inhouse.demo import run_demo

    return run_demo(settings, sys.modules[__name__], epochs=settings.train.epochs)


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

    models = commands.add_parser("models", help="the model registry")
    model_cmds = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add(model_cmds, "list", cmd_models_list, "every version of every model")
    show = _add(model_cmds, "show", cmd_models_show, "one version with metrics and lineage")
    show.add_argument("model", help="model name")
    show.add_argument("--version", default="champion", help="number, alias or 'latest'")

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
    from inhouse.crypto.cli import add_keys_command
    from inhouse.explain.cli import add_explain_command

    add_explain_command(commands)
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

    demo = _add(commands, "demo", cmd_demo, "the whole journey: cluster, data, train, serve")
    add_section_flags(demo, TrainSettings)
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


if __name__ == "__main__":
    sys.exit(main())
