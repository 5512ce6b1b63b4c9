"""Handlers of the ``inhouse`` sub-commands: ``handler(settings, args) -> exit code``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from inhouse import local_cluster
from inhouse.cli.ray_ops import compress_args, deploy, run_job, train_args
from inhouse.config import Settings
from inhouse.console import print_table, step
from inhouse.errors import UnavailableError


def _engine(settings: Settings) -> Any:
    from inhouse.schema import get_engine

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


def cmd_data_append(settings: Settings, args: argparse.Namespace) -> int:
    from inhouse.data import append_rows, get_dataset
    from inhouse.data.csv_file import read_tabular_csv

    authorize(settings, action="data:write", resource=args.dataset, detail="append")
    engine = _engine(settings)
    record = get_dataset(engine, args.dataset)
    if record.kind == "text":
        first, last, count = _append_texts(engine, args, list(record.class_names))
    else:
        features, labels = read_tabular_csv(
            args.csv,
            feature_names=list(record.feature_names),
            class_names=list(record.class_names),
            label_column=args.label_column,
        )
        first, last = append_rows(
            engine, args.dataset, features=features, labels=labels, split=args.split
        )
        count = len(labels)
    print(f"{args.dataset}: appended {count} {args.split} rows (ids {first}..{last})")
    return 0


def _append_texts(
    engine: Any, args: argparse.Namespace, class_names: list[str]
) -> tuple[int, int, int]:
    """Append a CSV's (text, label) rows to a text data set; labels by class name or index."""
    from inhouse.data.csv_file import class_index
    from inhouse.data.text_import import append_text_rows, read_csv_pairs

    pairs, _ = read_csv_pairs(
        args.csv, text_column=args.text_column, label_column=args.label_column
    )
    index = {name: i for i, name in enumerate(class_names)}
    labels = [
        class_index(label, index, where=f"{args.csv} line {line}")
        for line, (_text, label) in enumerate(pairs, start=2)
    ]
    first, last = append_text_rows(
        engine,
        args.dataset,
        texts=[text for text, _ in pairs],
        labels=labels,
        split=args.split,
    )
    return first, last, len(pairs)


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
    """One version as JSON. Statistics of its training rows (global importance...) are shown
    only with ``--training-stats`` and ``data:read`` on its data set: whoever may read the rows
    learns nothing more from them; a predict-only token must not."""
    registry = _registry(settings)
    info = registry.get(args.model, args.version)
    dataset = str(info.lineage.get("dataset") or args.model)
    lineage: dict[str, Any] = {
        **info.lineage,
        "training_stats": f"not shown; pass --training-stats (needs data:read on {dataset})",
    }
    if getattr(args, "training_stats", False):
        authorize(
            settings,
            action="data:read",
            resource=dataset,
            detail=f"training statistics of {info.model} v{info.version}",
        )
        lineage = registry.full_lineage(info)
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
                "lineage": lineage,
                "path": str(info.path),
            },
            indent=2,
            default=str,
        )
    )
    return 0


def cmd_train(settings: Settings, _args: argparse.Namespace) -> int:
    authorize(
        settings,
        action="train:submit",
        resource=settings.train.model,
        detail=f"data set {settings.train.dataset}",
    )
    result = run_job(settings, "jobs.train", train_args(settings), epochs=settings.train.epochs)
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


def cmd_compress(settings: Settings, args: argparse.Namespace) -> int:
    from inhouse.compress.admission import flags_finetune

    authorize(settings, action="model:deploy", resource=args.model, detail="compress")
    if flags_finetune(prune_amount=args.prune, finetune_epochs=args.finetune_epochs):
        # a fine-tune trains on the data set's rows: it is training, not only a deployment
        authorize(settings, action="train:submit", resource=args.model, detail="compress")
    result = run_job(settings, "jobs.compress", compress_args(args))
    print(result["report_markdown"])
    print(
        f"registered {result['model']} v{result['version']} (compressed from "
        f"v{result['parent_version']}): {result['message']}"
    )
    return 0


def _servable(settings: Settings, ref: str) -> list[str]:
    """Registered models with a version ``ref`` that can answer requests (text encoders
    without a classifier head cannot)."""
    from inhouse.errors import ModelNotFoundError

    registry, found = _registry(settings), []
    for model in registry.models():
        try:
            spec = registry.get(model, ref).spec
        except ModelNotFoundError:
            print(f"skipping {model}: it has no version {ref!r}")
            continue
        if spec.get("role") == "encoder":
            print(f"skipping {model}: a text encoder without a classifier head")
            continue
        found.append(model)
    return found


def cmd_deploy(settings: Settings, args: argparse.Namespace) -> int:
    models = args.models or _servable(settings, args.ref)
    if not models:
        raise UnavailableError("no servable model in the registry; run `inhouse train` first")
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
    # Without paths, cover every artifact we wrote: registry versions and training checkpoints.
    ours = [str(p) for p in (settings.registry_dir, settings.runs_dir) if p.exists()]
    if args.keys_action == "rotate" and args.reencrypt is not None:
        args.reencrypt = args.reencrypt or ours
    elif args.keys_action == "rotate" and not args.rewrap:
        args.rewrap = ours
    elif args.keys_action == "reencrypt" and not args.paths:
        args.paths = ours
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

    return run_demo(settings, epochs=settings.train.epochs, retrain_act=not args.no_retrain_act)
