"""Train a first model with Ray Train (PyTorch DDP), register it (and compress it).

Run it on a cluster exactly as a user would::

    ray job submit --working-dir . -- python -m inhouse.jobs.train --epochs 5 --num-workers 2
    ray job submit --working-dir . -- python -m inhouse.jobs.train --dataset banking77 \
        --model banking --model-dir /models/minilm --epochs 2 --max-length 64

The data set's kind (``inhouse.kinds``) decides the model and the job's further flags: a
tabular data set trains the MLP of the ``train`` settings, a text data set fine-tunes a Hugging
Face classifier (``--model-dir`` or ``--base``, ``--method full|head|lora``). This module is
the Ray wiring only: the kind prepares the run on the driver (privacy budget reserved before
any worker starts), every worker runs the kind's epochs, this job reports each epoch to Ray
with an (encrypted) checkpoint so a killed worker resumes from the last one
(``FailureConfig``), and the kind evaluates and registers the final weights.
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

from inhouse import services
from inhouse.config import Settings, load_settings
from inhouse.console import EPOCH_MARKER, RESULT_MARKER, emit
from inhouse.crypto import KeyRing
from inhouse.data import describe
from inhouse.data.consumed import check_consumed
from inhouse.errors import ConfigError
from inhouse.jobs.driver import joined_cluster
from inhouse.jobs.resume import resume
from inhouse.kinds import kind_named
from inhouse.kinds.training import (
    Trained,
    TrainingKind,
    TrainingRun,
    TrainOptions,
    WorkerConfig,
    WorkerPlace,
    new_run,
)
from inhouse.storage.runs import runs_storage
from inhouse.training import load_checkpoint, save_checkpoint

WORKER_KEY = "worker"  # the one entry of Ray Train's train_loop_config


def _maybe_crash(config: WorkerConfig, epoch: int, world: int) -> None:
    """Fault injection for the resume test: on the first attempt, one worker dies at this epoch,
    once Ray has committed the previous epoch's checkpoint (as after a real mid-run kill)."""
    crash_epoch, marker = config.crash_at_epoch, config.crash_marker
    if crash_epoch is None or marker is None or epoch != crash_epoch or os.path.exists(marker):
        return
    ray.train.get_all_reported_checkpoints(timeout_s=60)  # wait for in-flight reports
    if ray.train.get_context().get_world_rank() == min(1, world - 1):
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)  # a real process death, as a killed worker would be


def train_loop_per_worker(loop: dict[str, WorkerConfig]) -> None:
    """Runs on every Ray Train worker: the kind's epochs, each reported with a checkpoint.

    Ray Train hands a worker a dict; this one holds the typed :class:`WorkerConfig` alone.
    """
    config = loop[WORKER_KEY]
    context = ray.train.get_context()
    place = WorkerPlace(
        rank=context.get_world_rank(),
        world=context.get_world_size(),
        device=ray.train.torch.get_device(),
    )
    worker = kind_named(config.kind).training.worker(config, place)
    keyring = KeyRing(config.key_dir) if config.key_dir else None
    state = resume(
        model=worker.model, optimizer=worker.optimizer, keyring=keyring, run_name=config.run_name
    )
    start_epoch = int(state["epoch"]) + 1 if state is not None else 0
    worker.start(state=state, start_epoch=start_epoch, wrap=ray.train.torch.prepare_model)
    for epoch in range(start_epoch, config.epochs):
        _maybe_crash(config, epoch, place.world)
        metrics = worker.epoch(epoch) | {"resumed_from_epoch": start_epoch}
        if place.rank != 0:
            ray.train.report(metrics)
            continue
        emit(EPOCH_MARKER, metrics)
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(
                Path(tmp),
                model=worker.model,
                optimizer=worker.optimizer,
                state=metrics | worker.checkpoint_state(),
                keyring=keyring,
                artifact_id=config.run_name,
            )
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    worker.close()


def kind_of(settings: Settings, dataset: str) -> tuple[str, TrainingKind]:
    """The kind of model ``dataset`` trains (its rows' kind); refuses one without train rows."""
    info = describe(services.engine(settings), dataset)
    if info.train_rows == 0:
        raise ConfigError(f"data set {dataset!r} has no training rows")
    return info.kind, kind_named(info.kind).training


def kind_for(settings: Settings, options: TrainOptions) -> tuple[str, TrainingKind]:
    """The kind of ``options.dataset``, whose options ``options`` must be."""
    kind, training = kind_of(settings, options.dataset)
    if not isinstance(options, training.options_type):
        raise ConfigError(
            f"data set {options.dataset!r} holds {kind} rows; "
            f"{type(options).__name__} does not train on them"
        )
    return kind, training


def trainer(
    settings: Settings,
    options: TrainOptions,
    run: TrainingRun,
    loop_config: WorkerConfig,
    *,
    keep: int = 2,
    callbacks: list[Any] | None = None,
) -> ray.train.torch.TorchTrainer:
    """The Ray Train run of ``run``: its workers, where its checkpoints go (``storage.runs_uri``:
    a shared directory or S3, :func:`inhouse.storage.runs.runs_storage`), how it resumes."""
    resources = {"CPU": run.cpus_per_worker} if run.cpus_per_worker is not None else None
    storage_path, storage_filesystem = runs_storage(settings)
    return ray.train.torch.TorchTrainer(
        train_loop_per_worker,
        train_loop_config={WORKER_KEY: loop_config},
        scaling_config=ray.train.ScalingConfig(
            num_workers=options.num_workers,
            use_gpu=options.use_gpu,
            resources_per_worker=resources,
        ),
        run_config=ray.train.RunConfig(
            name=run.name,
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            failure_config=ray.train.FailureConfig(max_failures=options.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=keep),
            callbacks=callbacks,
        ),
    )


def loop_config(
    settings: Settings,
    kind: str,
    run: TrainingRun,
    *,
    tensorboard: Path | None = None,
    crash_at_epoch: int | None = None,
) -> WorkerConfig:
    """What every worker of ``run`` receives: the kind's part and the job's (TensorBoard's
    directory, by default the run's ``tensorboard``)."""
    keyring = services.keyring(settings)
    return WorkerConfig(
        kind=kind,
        part=run.worker_config,
        run_name=run.name,
        epochs=run.epochs,
        tensorboard_dir=str(tensorboard or run.directory / "tensorboard"),
        key_dir=str(settings.key_dir) if keyring is not None else None,
        crash_at_epoch=crash_at_epoch,
        crash_marker=str(run.directory / "crash-marker") if crash_at_epoch is not None else None,
    )


def run(
    settings: Settings, options: TrainOptions, *, crash_at_epoch: int | None = None
) -> dict[str, Any]:
    """Train, evaluate on the test split, register; returns the kind's summary."""
    kind, training = kind_for(settings, options)
    name, directory = new_run(settings, "train", options.model)
    prepared = training.prepare(settings, options, name=name, directory=directory)
    config = loop_config(settings, kind, prepared, crash_at_epoch=crash_at_epoch)
    engine = services.engine(settings)
    try:  # the append-only contract: consumed rows unchanged; record the ones read now
        info = prepared.state.get("info")
        check_consumed(engine, options.dataset, up_to=getattr(info, "last_id", None), by=name)
    except BaseException:
        prepared.privacy.fail(engine, steps=0)  # refused before a row was read
        raise
    started = time.perf_counter()
    try:
        result = trainer(settings, options, prepared, config).fit()
    except BaseException:
        prepared.privacy.fail(engine)
        raise
    seconds = time.perf_counter() - started
    if result.checkpoint is None:
        raise ConfigError("training finished without a checkpoint; see the Ray job logs")
    with result.checkpoint.as_directory() as directory:
        # The driver names the run and the final epoch: the files cannot pick another.
        history = load_checkpoint(
            Path(directory),
            model=prepared.model,
            keyring=services.keyring(settings),
            artifact_id=prepared.name,
            epoch=prepared.epochs - 1,
        )
    return training.finish(
        settings, options, prepared, Trained(history, result.metrics or {}, seconds)
    )


def _first_pass(argv: list[str]) -> argparse.Namespace:
    """``--config`` and ``--dataset``: what finds the data set, whose kind has the other flags."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--config")
    parser.add_argument("--dataset")
    known, _ = parser.parse_known_args(argv)
    return known


def build_parser(training: TrainingKind) -> argparse.ArgumentParser:
    """The job's flags: ``--config``, ``--crash-at-epoch`` and the kind's options."""
    from inhouse.flags import add_section_flags

    parser = argparse.ArgumentParser(
        prog="python -m inhouse.jobs.train",
        description="Train a model of the data set's kind with Ray Train DDP and register it.",
    )
    parser.add_argument("--config", help="YAML settings file (see README)")
    parser.add_argument(
        "--crash-at-epoch",
        type=int,
        default=None,
        help="testing: kill one worker once at this epoch to prove resume",
    )
    add_section_flags(parser, training.options_type)
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    first = _first_pass(arguments)
    settings = load_settings(config_file=first.config)
    _, training = kind_of(settings, first.dataset or settings.train.dataset)
    args = build_parser(training).parse_args(arguments)
    options = training.options(settings, args)
    with joined_cluster():
        summary = run(settings, options, crash_at_epoch=args.crash_at_epoch)
    emit(RESULT_MARKER, summary)
    print("\n".join(training.summary_lines(summary)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
