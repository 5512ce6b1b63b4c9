"""Fine-tune a text classifier with Ray Train (PyTorch DDP), register it, compress it to int8.

Run it on a cluster as a user would (``jobs/train.py --model-dir DIR`` delegates here)::

    ray job submit --working-dir . -- python -m jobs.train_text --dataset banking77 \
        --model banking --model-dir /models/minilm --epochs 2 --max-length 64

The start is a local Hugging Face directory (``--model-dir``, checked and loaded offline) or a
registered text version (``--base NAME[:REF]``). ``--method full`` fine-tunes every weight and
registers the float classifier plus its int8 version (served when it loses at most
``--max-accuracy-drop`` points); ``head`` and ``lora`` train a small fraction of the weights
and register an adapter versioned against the base. Each worker tokenises its shard itself;
mixed precision (bf16, else fp16) runs only on CUDA; checkpoints are encrypted and resumed.

``--dp`` (``head`` and ``lora``; a method whose layers Opacus cannot clip per example is
refused with the layers named) plans the run and charges the data set's privacy budget before
any worker starts, exactly as the tabular job does: Opacus across the DDP workers (``DPDDP``,
Poisson sampling of the training rows, no ``DistributedSampler``), its accountant in every
checkpoint, epsilon and the mechanism in the version's lineage, the ledger settled at the end.
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

from inhouse import services
from inhouse.config import Settings, TextTrainOptions, load_settings, settings_payload
from inhouse.console import EPOCH_MARKER, RESULT_MARKER, emit
from inhouse.crypto import KeyRing
from inhouse.data import describe
from inhouse.data.text_import import TextRows, read_text_rows
from inhouse.errors import ConfigError
from inhouse.schema import get_engine
from inhouse.training import load_checkpoint, save_checkpoint, unwrap
from inhouse.training.dp import DPPlan, PrivateTraining, make_private
from inhouse.training.text import (
    evaluate_texts,
    head_features,
    shard,
    start_model,
    train_epoch,
    warm_head,
)
from inhouse.training.text_dp import (
    check_private,
    prepare_text,
    row_dataset,
    train_epoch_private,
)
from inhouse.training.text_register import register_result
from jobs.driver import joined_cluster
from jobs.resume import resume


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker: tokenise the shard, train, report, checkpoint."""
    options: TextTrainOptions = config["options"]
    torch.set_num_threads(options.threads_per_worker)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    settings = config["settings"].load()
    engine = get_engine(settings.db_url)
    train = read_text_rows(engine, options.dataset, split="train", up_to_id=config["up_to_id"])
    probe = read_text_rows(engine, options.dataset, split="test", up_to_id=config["up_to_id"])

    model, tokenizer, _spec, _base = start_model(settings, options, config["class_names"])
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=options.learning_rate())
    keyring = KeyRing(settings.key_dir) if config["encrypted"] else None
    start_epoch = 0
    state: dict[str, Any] = {}
    resumed = resume(model=model, optimizer=optimizer, keyring=keyring, run_name=config["run_name"])
    if resumed is not None:
        state, start_epoch = resumed, int(resumed["epoch"]) + 1
    plan = DPPlan(**config["dp_plan"]) if config.get("dp_plan") else None
    if plan is not None:
        _private_loop(
            config,
            options,
            model,
            (train, probe, tokenizer),
            optimizer,
            plan=plan,
            accountant=state.get("accountant"),
            start_epoch=start_epoch,
            keyring=keyring,
        )
        return
    if options.head_epochs and start_epoch == 0 and rank == 0:
        # DDP starts every worker from rank 0's weights, warmed head included.
        rows = shard(train, options=options, epoch=0, rank=0, world=1)
        features = head_features(
            model, tokenizer, [train.texts[i] for i in rows], max_length=options.max_length
        )
        warm_head(
            model,
            features,
            [train.labels[i] for i in rows],
            epochs=options.head_epochs,
            lr=options.head_lr,
            train_pooler=options.method == "full",
            seed=options.seed,
        )
    ddp = ray.train.torch.prepare_model(model) if world > 1 else model
    for epoch in range(start_epoch, options.epochs):
        started = time.perf_counter()
        stats = train_epoch(
            ddp,
            tokenizer,
            train,
            optimizer,
            options=options,
            epoch=epoch,
            rank=rank,
            world=world,
            device=device,
        )
        metrics = _epoch_metrics(stats, epoch, start_epoch, device) | {
            "probe_accuracy": evaluate_texts(
                unwrap(ddp), tokenizer, probe, options, limit=options.probe_rows, device=device
            ),
            "epoch_seconds": time.perf_counter() - started,
        }
        _report(
            config, metrics, rank=rank, model=ddp, optimizer=optimizer, extra={}, keyring=keyring
        )


def _private_loop(
    config: dict[str, Any],
    options: TextTrainOptions,
    model: torch.nn.Module,
    data: tuple[TextRows, TextRows, Any],
    optimizer: torch.optim.Optimizer,
    *,
    plan: DPPlan,
    accountant: dict[str, Any] | None,
    start_epoch: int,
    keyring: KeyRing | None,
) -> None:
    """DP-SGD epochs: Opacus wraps the worker (DPDDP across workers, its Poisson sampler over
    the row indices instead of a DistributedSampler); the accountant goes into each checkpoint,
    restored from it on resume, so a resumed run keeps the epsilon it had spent."""
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    train, probe, tokenizer = data
    model.train()  # Opacus refuses a module in eval mode (a registered base loads as one)
    private: PrivateTraining = make_private(
        model=model,
        optimizer=optimizer,
        dataset=row_dataset(train, options),
        plan=plan,
        distributed=world > 1,
        accountant_state=accountant,
    )
    for epoch in range(start_epoch, options.epochs):
        started = time.perf_counter()
        stats = train_epoch_private(
            private.model,
            tokenizer,
            train,
            private.optimizer,
            private.loader,
            options=options,
            epoch=epoch,
            device=device,
        )
        metrics = _epoch_metrics(stats, epoch, start_epoch, device) | {
            "probe_accuracy": evaluate_texts(
                model, tokenizer, probe, options, limit=options.probe_rows, device=device
            ),
            "epsilon": private.epsilon(plan.delta) if rank == 0 else 0.0,
            "dp_steps": private.steps(),
        }
        metrics["epoch_seconds"] = time.perf_counter() - started
        _report(
            config,
            metrics,
            rank=rank,
            model=model,
            optimizer=private.optimizer.original_optimizer,  # type: ignore[attr-defined]
            extra={"accountant": private.accountant_state()},
            keyring=keyring,
        )


def _epoch_metrics(
    stats: dict[str, Any], epoch: int, start_epoch: int, device: torch.device
) -> dict[str, Any]:
    """Loss and accuracy summed over every worker, and where the epoch ran."""
    totals = torch.tensor(
        [stats["loss_sum"], stats["correct"], stats["seen"]], dtype=torch.float64, device=device
    )
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    loss_sum, correct, seen = (float(t) for t in totals.cpu())
    return {
        "epoch": epoch,
        "train_loss": loss_sum / max(seen, 1.0),
        "train_accuracy": correct / max(seen, 1.0),
        "resumed_from_epoch": start_epoch,
        "backend": dist.get_backend() if dist.is_initialized() else "none",
        "device": str(device),
        "amp": stats["amp"],
    }


def _report(
    config: dict[str, Any],
    metrics: dict[str, Any],
    *,
    rank: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    extra: dict[str, Any],
    keyring: KeyRing | None,
) -> None:
    """Rank 0 prints the epoch and reports it with an (encrypted) checkpoint; the rest report."""
    if rank != 0:
        ray.train.report(metrics)
        return
    emit(EPOCH_MARKER, metrics)
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(
            Path(tmp),
            model=model,
            optimizer=optimizer,
            state=metrics | extra,
            keyring=keyring,
            artifact_id=config["run_name"],
        )
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _trainer(
    settings: Settings, options: TextTrainOptions, loop_config: dict[str, Any], run_name: str
) -> Any:
    return ray.train.torch.TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=options.num_workers,
            use_gpu=options.use_gpu,
            resources_per_worker={"CPU": options.cpus_per_worker},
        ),
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=str(settings.runs_dir / "ray"),
            failure_config=ray.train.FailureConfig(max_failures=options.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
    )


def run(settings: Settings, options: TextTrainOptions) -> dict[str, Any]:
    """Train, evaluate on the test split, register (and compress); returns the summary."""
    engine = get_engine(settings.db_url)
    info = describe(engine, options.dataset)
    if info.kind != "text":
        raise ConfigError(f"data set {options.dataset!r} holds {info.kind} rows, not text")
    if info.train_rows == 0:
        raise ConfigError(f"data set {options.dataset!r} has no training rows")
    run_name = f"train-text-{options.model}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run_dir = settings.runs_dir / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    keyring = services.keyring(settings)
    # Refuse bad options (missing dir, unknown base, layers DP cannot clip, a budget the run
    # would overspend, non-DP on a budgeted data set) here, before any worker starts.
    model, tokenizer, spec, base = start_model(settings, options, info.class_names)
    if options.dp:
        check_private(model, tokenizer, options)
    privacy = prepare_text(engine=engine, options=options, info=info, run_name=run_name)
    loop_config = {
        **privacy.worker_config(),
        "options": options,
        "settings": settings_payload(settings),
        "run_name": run_name,
        "class_names": info.class_names,
        "up_to_id": info.last_id,
        "encrypted": keyring is not None,
    }
    started = time.perf_counter()
    try:
        result = _trainer(settings, options, loop_config, run_name).fit()
    except BaseException:
        privacy.fail(engine)
        raise
    seconds = time.perf_counter() - started
    if result.checkpoint is None:
        raise ConfigError("training finished without a checkpoint; see the Ray job logs")
    with result.checkpoint.as_directory() as directory:
        # The driver names the run and the final epoch: the files cannot pick another.
        history = load_checkpoint(
            Path(directory),
            model=model,
            keyring=keyring,
            artifact_id=run_name,
            epoch=options.epochs - 1,
        )
    dp_steps = (result.metrics or {}).get("dp_steps")  # reported through Ray, not a file
    test = read_text_rows(engine, options.dataset, split="test", up_to_id=info.last_id)
    calibration: list[str] = []  # training texts calibrate the int8 copy's smoothing
    if not options.dp:  # (a DP run's budget does not cover statistics of raw rows)
        calibration = read_text_rows(
            engine, options.dataset, split="train", up_to_id=info.last_id
        ).texts
    summary = register_result(
        settings,
        options,
        model=model,
        tokenizer=tokenizer,
        spec=spec,
        base=base,
        test=test,
        history=history,
        info=info,
        run_name=run_name,
        privacy=privacy.lineage(reported_steps=dp_steps),
        calibration_texts=calibration,
    )
    privacy.settle(engine, reported_steps=dp_steps, version=summary["version"])
    return summary | {"run_dir": str(run_dir), "train_seconds": round(seconds, 2)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.train_text",
        description="Fine-tune a text classifier with Ray Train DDP and register it.",
    )
    parser.add_argument("--config", help="YAML settings file (see README)")
    TextTrainOptions.add_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings(config_file=args.config)
    options = TextTrainOptions.from_args(args)
    with joined_cluster():
        summary = run(settings, options)
    emit(RESULT_MARKER, summary)
    print(
        f"trained {summary['model']} v{summary['version']} ({options.method}): test accuracy "
        f"{summary['test_accuracy']:.4f} in {summary['train_seconds']} s; serving "
        f"v{summary['served_version']}"
    )
    privacy = summary.get("privacy") or {}
    if privacy.get("dp"):
        print(
            f"DP: ε={privacy['epsilon']:.3f} (δ={privacy['delta']:g}, {privacy['accountant']}), "
            f"noise {privacy['noise_multiplier']:.3g}, q={privacy['sample_rate']:.3g}, "
            f"{privacy['steps']} steps; charged to data set {options.dataset!r}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
