"""The training half of a model kind (``TrainingKind``): the Ray-free pieces of a first model.

``jobs/train.py`` owns the Ray Train wiring (``TorchTrainer``, scaling, checkpoints reported to
Ray, resume) and calls a kind for everything else, never branching on it:

* on the driver: the kind's options (:meth:`TrainingKind.options`, its flags), then
  :meth:`TrainingKind.prepare` (refuse bad options, reserve the privacy budget, build the
  model the final checkpoint loads into) and, after training, :meth:`TrainingKind.finish`
  (evaluate, register the version with its lineage, settle the ledger);
* on every worker: :meth:`TrainingKind.worker`, a :class:`TrainingWorker` that reads its data,
  builds the model and optimizer (which the job resumes from a checkpoint), wraps them for DP or
  DDP and runs one epoch at a time.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch
    from pydantic import BaseModel

    from inhouse.config import Settings
    from inhouse.training.private_run import PrivateRun


class TrainOptions(Protocol):
    """What the job reads from any kind's options (``TrainSettings``, ``TextTrainOptions``)."""

    @property
    def dataset(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def epochs(self) -> int: ...
    @property
    def num_workers(self) -> int: ...
    @property
    def use_gpu(self) -> bool: ...
    @property
    def max_failures(self) -> int: ...


@dataclass
class TrainingRun:
    """One run as the driver prepared it.

    ``worker_config`` is the kind's own part of what every worker receives (a typed object
    Ray pickles: :attr:`WorkerConfig.part`); ``model`` is the driver's module the final
    checkpoint loads into; ``state`` is the kind's own driver state, handed back to
    :meth:`TrainingKind.finish`.
    """

    name: str
    directory: Path
    epochs: int
    privacy: PrivateRun
    model: torch.nn.Module
    worker_config: Any
    cpus_per_worker: float | None = None
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerConfig:
    """What every Ray Train worker of a run receives (typed; Ray pickles it): the ``kind``
    and its own ``part`` (:attr:`TrainingRun.worker_config`), and the job's: the run's name
    (its checkpoints' artifact id), epochs, TensorBoard directory, key ring directory (None:
    checkpoints unencrypted) and the fault injection of the resume test."""

    kind: str
    part: Any
    run_name: str
    epochs: int
    tensorboard_dir: str
    key_dir: str | None = None
    crash_at_epoch: int | None = None
    crash_marker: str | None = None


@dataclass(frozen=True)
class Trained:
    """What a finished Ray Train run left: the final checkpoint's ``history`` (its state), the
    metrics the workers last ``reported`` through Ray, and the ``seconds`` it took."""

    history: dict[str, Any]
    reported: dict[str, Any]
    seconds: float


@dataclass(frozen=True)
class WorkerPlace:
    """Where a worker runs: its rank among ``world`` workers and its device."""

    rank: int
    world: int
    device: torch.device


Wrap = Callable[["torch.nn.Module"], "torch.nn.Module"]


class TrainingWorker(Protocol):
    """One Ray Train worker's training, built by :meth:`TrainingKind.worker`.

    ``model`` (unwrapped) and ``optimizer`` (never a DP wrapper) are what checkpoints hold and
    resume restores.
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer

    def start(self, *, state: dict[str, Any] | None, start_epoch: int, wrap: Wrap) -> None:
        """Wrap for DP-SGD or for DDP (``wrap``), once resumed (``state`` of the checkpoint)."""
        ...

    def epoch(self, epoch: int) -> dict[str, Any]:
        """Train one epoch and evaluate; the metrics, summed over every worker."""
        ...

    def checkpoint_state(self) -> dict[str, Any]:
        """What the epoch's checkpoint carries beyond the metrics (the DP accountant)."""
        ...

    def close(self) -> None:
        """Release what the worker holds open (TensorBoard)."""
        ...


class TrainingKind(Protocol):
    """What ``jobs/`` calls; one per kind (``kinds/<name>/training.py``)."""

    @property
    def options_type(self) -> type[BaseModel]:
        """The kind's options model; every field is a flag of the training job."""
        ...

    def options(self, settings: Settings, args: argparse.Namespace) -> TrainOptions:
        """The options of one run: the flags given in ``args`` over ``settings``."""
        ...

    def prepare(
        self, settings: Settings, options: Any, *, name: str, directory: Path
    ) -> TrainingRun:
        """Check the run called ``name`` and reserve its privacy spend, before any worker
        starts; ``directory`` is the run's own."""
        ...

    def worker(self, config: WorkerConfig, place: WorkerPlace) -> TrainingWorker:
        """Build a worker from ``config`` (``config.part`` is ``run.worker_config``), on the
        worker's process."""
        ...

    def finish(
        self, settings: Settings, options: Any, run: TrainingRun, trained: Trained
    ) -> dict[str, Any]:
        """Evaluate ``run.model`` (the final weights), register it and settle the ledger; the
        job's summary."""
        ...

    def summary_lines(self, summary: dict[str, Any]) -> list[str]:
        """What a person reads of a finished run's summary."""
        ...


def new_run(settings: Settings, label: str, model: str) -> tuple[str, Path]:
    """A fresh run's name (``<label>-<model>-<time>-<pid>``) and its directory, created."""
    name = f"{label}-{model}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    directory = settings.runs_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    return name, directory


def summed(values: list[float], device: torch.device) -> list[float]:
    """``values`` summed over every DDP worker (as they are when training alone)."""
    import torch
    import torch.distributed as dist

    totals = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    return [float(t) for t in totals.cpu()]


def where_it_ran(device: torch.device) -> dict[str, str]:
    """The distributed backend and the device of an epoch, for its metrics."""
    import torch.distributed as dist

    backend = dist.get_backend() if dist.is_initialized() else "none"
    return {"backend": backend, "device": str(device)}
