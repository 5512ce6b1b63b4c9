"""Train the tabular MLP with Ray Train (PyTorch DDP), register it and make it the champion.

Run it on a cluster exactly as a user would::

    ray job submit --working-dir . -- python -m jobs.train --epochs 5 --num-workers 2

Each worker reads the training split from the SQL data set, shards it with a
``DistributedSampler``, trains with DDP (gloo on CPU, NCCL with ``--use-gpu``), reports
per-epoch metrics to Ray (dashboard) and TensorBoard, and checkpoints every epoch so a
killed worker resumes from the last epoch (``FailureConfig``). The driver then evaluates
the final weights on the fixed test split and registers a new version with its lineage.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from torch.utils.tensorboard import SummaryWriter

from inhouse import services
from inhouse.config import Settings, TrainSettings, load_settings
from inhouse.console import EPOCH_MARKER, RESULT_MARKER, emit
from inhouse.crypto import KeyRing
from inhouse.data import DatasetInfo, describe, read_rows
from inhouse.errors import ModelNotFoundError
from inhouse.explain.lineage import importance_lineage
from inhouse.flags import add_section_flags, section_overrides
from inhouse.models import MLPSpec, build_model
from inhouse.registry import Registry
from inhouse.schema import get_engine
from inhouse.training import (
    evaluate,
    load_checkpoint,
    private_run,
    save_checkpoint,
    train_one_epoch,
)
from inhouse.training.dp import DPPlan, PrivateTraining, make_private
from jobs.driver import joined_cluster
from jobs.resume import resume


def _all_reduce_stats(
    loss: float, correct: float, seen: float, device: torch.device
) -> list[float]:
    totals = torch.tensor([loss * seen, correct, seen], dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    return [float(t) for t in totals.cpu()]


def _maybe_crash(config: dict[str, Any], epoch: int) -> None:
    """Fault injection for the resume test: on the first attempt, one worker dies at this epoch,
    once Ray has committed the previous epoch's checkpoint (as after a real mid-run kill)."""
    crash_epoch = config.get("crash_at_epoch")
    marker = config.get("crash_marker")
    if crash_epoch is None or marker is None or epoch != crash_epoch or os.path.exists(marker):
        return
    ray.train.get_all_reported_checkpoints(timeout_s=60)  # wait for in-flight reports
    if ray.train.get_context().get_world_rank() == min(1, config["num_workers"] - 1):
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)  # a real process death, as a killed worker would be


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker."""
    torch.set_num_threads(max(1, int(config.get("threads_per_worker", 1))))
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    engine = get_engine(config["db_url"])
    train = read_rows(engine, config["dataset"], split="train", up_to_id=config["up_to_id"])
    test = read_rows(engine, config["dataset"], split="test", up_to_id=config["up_to_id"])

    torch.manual_seed(config["seed"])
    model = build_model(config["spec"])
    plan = DPPlan(**config["dp_plan"]) if config.get("dp_plan") else None
    if plan is not None:  # DP: scale by public bounds, never by private statistics
        model[0].set_bounds(*map(torch.tensor, config["dp_scaling"]))  # type: ignore[operator]
    else:
        model[0].fit(train.x)  # type: ignore[operator]
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    start_epoch = 0
    state: dict[str, Any] = {}
    keyring = KeyRing(config["key_dir"]) if config["key_dir"] else None
    resumed = resume(model=model, optimizer=optimizer, keyring=keyring, run_name=config["run_name"])
    if resumed is not None:
        state, start_epoch = resumed, int(resumed["epoch"]) + 1
    base = model
    writer = SummaryWriter(config["tensorboard_dir"]) if rank == 0 else None
    if writer is not None and start_epoch == 0:  # before Opacus adds its hooks
        writer.add_graph(base, train.x[:1].to(device))
    dataset = TensorDataset(train.x, train.y)
    sampler: DistributedSampler[Any] | None = None
    private: PrivateTraining | None = None
    if plan is not None:
        private = make_private(
            model=model,
            optimizer=optimizer,
            dataset=dataset,
            plan=plan,
            distributed=world > 1,
            accountant_state=state.get("accountant"),
        )
        model, optimizer, loader = private.model, private.optimizer, private.loader
    else:
        model = ray.train.torch.prepare_model(model)
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, seed=config["seed"])
        loader = DataLoader(dataset, batch_size=config["batch_size"], sampler=sampler)
    for epoch in range(start_epoch, config["epochs"]):
        _maybe_crash(config, epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        started = time.perf_counter()
        stats = train_one_epoch(model, loader, optimizer)
        loss_sum, correct, seen = _all_reduce_stats(
            stats.loss, stats.accuracy * stats.samples, stats.samples, device
        )
        held_out = evaluate(base, test.x, test.y)
        metrics = {
            "epoch": epoch,
            "train_loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            "test_loss": held_out.loss,
            "test_accuracy": held_out.accuracy,
            "epoch_seconds": time.perf_counter() - started,
            "resumed_from_epoch": start_epoch,
            "backend": dist.get_backend() if dist.is_initialized() else "none",
            "device": str(device),
        }
        if private is not None and plan is not None:
            metrics["epsilon"] = private.epsilon(plan.delta) if writer is not None else 0.0
            metrics["dp_steps"] = private.steps()
        if writer is not None:
            emit(EPOCH_MARKER, metrics)
            for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "epsilon"):
                if key in metrics:
                    writer.add_scalar(key.replace("_", "/", 1), metrics[key], epoch)
            for name, param in base.named_parameters():
                writer.add_histogram(name, param.detach().cpu(), epoch)
            writer.flush()
            with tempfile.TemporaryDirectory() as tmp:
                save_checkpoint(
                    Path(tmp),
                    model=base,
                    optimizer=getattr(optimizer, "original_optimizer", optimizer),
                    state=metrics | ({"accountant": private.accountant_state()} if private else {}),
                    keyring=keyring,
                    artifact_id=config["run_name"],
                )
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics)
    if writer is not None:
        writer.close()


def _global_explanation(
    registry: Registry,
    cfg: TrainSettings,
    model: torch.nn.Module,
    engine: Any,
    info: DatasetInfo,
    spec: dict[str, Any],
    privacy: private_run.PrivateRun,
) -> dict[str, Any]:
    """Mean |SHAP| per feature on training rows, compared with the current champion's.

    A DP version is explained on points drawn from its public feature bounds instead: the
    attributions of private rows would be a release the privacy budget does not cover.
    """
    try:
        # the champion's global importance is a statistic of rows: only its lineage file has it
        champion_lineage: dict[str, Any] | None = registry.full_lineage(registry.get(cfg.model))
    except ModelNotFoundError:
        champion_lineage = None
    if privacy.bounds is not None:
        lo, hi = (torch.tensor(b) for b in privacy.bounds)
        background = lo + (hi - lo) * torch.rand(
            256, len(lo), generator=torch.Generator().manual_seed(0)
        )
    else:
        background = read_rows(engine, cfg.dataset, split="train", up_to_id=info.last_id).x
    return importance_lineage(
        model.eval(),
        background,
        feature_names=spec["feature_names"],
        champion_lineage=champion_lineage,
    )


def _compress(registry: Registry, engine: Any, cfg: TrainSettings, version: int) -> dict[str, Any]:
    """Prune + int8 the new version; the compressed one becomes champion if it passes the gate.

    A DP version is only quantized: pruning fine-tunes on the rows without noise, which
    would spend privacy the ledger never charged; int8 alone is post-processing.
    """
    from inhouse.compress.versioning import compress_version
    from inhouse.config import CompressionSettings, GateSettings

    settings = CompressionSettings(prune_amount=0.0, finetune_epochs=0) if cfg.dp else None
    result = compress_version(
        registry=registry,
        engine=engine,
        model=cfg.model,
        ref=str(version),
        settings=settings or CompressionSettings(),
        gate=GateSettings(),
        promote=cfg.promote,
    )
    keys = ("version", "promoted", "message", "test_accuracy", "size_ratio", "fidelity")
    return {key: result[key] for key in keys} | {"gate_passed": result["gate"]["passed"]}


def _code_revision() -> str:
    return os.environ.get("INHOUSE_CODE_REVISION", "unknown")


def setup_run(settings: Settings, kind: str) -> tuple[Any, DatasetInfo, dict[str, Any], str, Path]:
    """The data set, model spec, run name and run directory of a training or tuning run."""
    cfg: TrainSettings = settings.train
    engine = get_engine(settings.db_url)
    info = describe(engine, cfg.dataset)
    if info.train_rows == 0:
        raise SystemExit(f"error: data set {cfg.dataset!r} has no training rows")
    spec = MLPSpec(
        input_dim=info.n_features,
        hidden=cfg.hidden,
        num_classes=len(info.class_names),
        feature_names=info.feature_names,
        class_names=info.class_names,
    ).model_dump()
    run_name = f"{kind}-{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run_dir = settings.runs_dir / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    return engine, info, spec, run_name, run_dir


def run(settings: Settings, *, crash_at_epoch: int | None = None) -> dict[str, Any]:
    """Train, evaluate on the test split, register; returns the summary dict."""
    cfg: TrainSettings = settings.train
    engine, info, spec, run_name, run_dir = setup_run(settings, "train")
    keyring = services.keyring(settings)
    privacy = private_run.prepare(
        engine=engine, cfg=cfg, info=info, run_name=run_name, num_workers=cfg.num_workers
    )
    loop_config = {
        **privacy.worker_config(),
        "run_name": run_name,
        "key_dir": str(settings.key_dir) if keyring is not None else None,
        **cfg.model_dump(),
        "spec": spec,
        "db_url": settings.db_url,
        "up_to_id": info.last_id,
        "tensorboard_dir": str(run_dir / "tensorboard"),
        "crash_at_epoch": crash_at_epoch,
        "crash_marker": str(run_dir / "crash-marker") if crash_at_epoch is not None else None,
    }
    trainer = ray.train.torch.TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu),
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=str(settings.runs_dir / "ray"),
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
    )
    started = time.perf_counter()
    try:
        result = trainer.fit()
    except BaseException:
        privacy.fail(engine)
        raise
    seconds = time.perf_counter() - started
    if result.checkpoint is None:
        raise SystemExit("error: training finished without a checkpoint")
    model = build_model(spec)
    with result.checkpoint.as_directory() as directory:
        # The driver names the run and the final epoch: the files cannot pick another.
        history = load_checkpoint(
            Path(directory),
            model=model,
            keyring=keyring,
            artifact_id=run_name,
            epoch=cfg.epochs - 1,
        )
    dp_steps = (result.metrics or {}).get("dp_steps")  # reported through Ray, not a file
    test = read_rows(engine, cfg.dataset, split="test", up_to_id=info.last_id)
    final = evaluate(model, test.x, test.y)
    registry = services.registry(settings)
    metrics = {
        "test_accuracy": final.accuracy,
        "test_loss": final.loss,
        "train_accuracy": history["train_accuracy"],
        "resumed_from_epoch": history["resumed_from_epoch"],
        "train_seconds": seconds,
    }
    lineage = {
        "dataset": cfg.dataset,
        "rows": {
            "first_id": info.first_id,
            "up_to_id": info.last_id,
            "train_rows": info.train_rows,
            "test_rows": info.test_rows,
        },
        "config": cfg.model_dump(),
        "code_revision": _code_revision(),
        "run": run_name,
        "run_dir": str(run_dir),
        "parent": None,
    }
    lineage["privacy"] = privacy.lineage(reported_steps=dp_steps)
    lineage.update(_global_explanation(registry, cfg, model, engine, info, spec, privacy))
    version = registry.register(
        cfg.model, module=model, spec=spec, metrics=metrics, lineage=lineage
    )
    privacy.settle(engine, reported_steps=dp_steps, version=version.version)
    if cfg.promote:
        registry.set_alias(cfg.model, "champion", version.version)
    compressed = _compress(registry, engine, cfg, version.version) if cfg.compress else None
    served = registry.resolve(cfg.model, "champion") if cfg.promote else None
    return {
        "compressed": compressed,
        "served_version": served,
        "model": cfg.model,
        "version": version.version,
        "champion": cfg.promote,
        "test_accuracy": final.accuracy,
        "train_seconds": round(seconds, 2),
        "epochs": cfg.epochs,
        "num_workers": cfg.num_workers,
        "backend": history.get("backend"),
        "privacy": lineage["privacy"],
        "device": history.get("device"),
        "tensorboard": f"tensorboard --logdir {run_dir / 'tensorboard'}",
        "run_dir": str(run_dir),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.train",
        description="Train the tabular MLP with Ray Train DDP and register it.",
    )
    parser.add_argument("--config", help="YAML settings file (see README)")
    parser.add_argument(
        "--crash-at-epoch",
        type=int,
        default=None,
        help="testing: kill one worker once at this epoch to prove resume",
    )
    add_section_flags(parser, TrainSettings)
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if any(a.split("=")[0] in ("--model-dir", "--base") for a in arguments):
        from jobs import train_text  # a transformer: the text fine-tuning job

        return train_text.main(arguments)
    args = build_parser().parse_args(argv)
    settings = load_settings(config_file=args.config, train=section_overrides(args, TrainSettings))
    with joined_cluster():
        summary = run(settings, crash_at_epoch=args.crash_at_epoch)
    emit(RESULT_MARKER, summary)
    print(
        f"trained {summary['model']} v{summary['version']}: "
        f"test accuracy {summary['test_accuracy']:.4f} in {summary['train_seconds']} s"
    )
    if summary["compressed"]:
        print(f"compressed v{summary['compressed']['version']}: {summary['compressed']['message']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
