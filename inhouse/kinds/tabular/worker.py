"""One worker of a tabular training run: its rows, the MLP, DDP or DP-SGD, TensorBoard.

Without DP each of several workers reads only its shard of the rows
(:mod:`inhouse.kinds.tabular.sharding`: ``id % world == rank``), standardises by statistics
all-reduced over every shard and runs as many batches as the others (its shard padded to the
largest). A DP run reads the whole split, scales by the public feature bounds the driver
planned (never by private statistics) and lets Opacus draw Poisson batches. Rank 0 writes the
epoch's scalars and weight histograms to TensorBoard.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.tensorboard import SummaryWriter

from inhouse.config import TrainSettings
from inhouse.data import read_rows
from inhouse.errors import ConfigError
from inhouse.kinds.tabular.model import build
from inhouse.kinds.tabular.sharding import (
    EqualBatchSampler,
    agreed_rows,
    global_statistics,
    set_statistics,
)
from inhouse.kinds.training import WorkerConfig, WorkerPlace, Wrap, summed, where_it_ran
from inhouse.schema import get_engine
from inhouse.training import evaluate, train_one_epoch
from inhouse.training.dp import PrivateTraining, make_private
from inhouse.training.private_run import WorkerPrivacy
from inhouse.training.recipe import LearningRateSchedule, build_optimizer, initialise

SCALARS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "epsilon")


@dataclass(frozen=True)
class TabularWorkerConfig:
    """The tabular part of what every worker receives: the run's options, the MLP's spec,
    where its rows are (up to the last id the driver saw) and its privacy."""

    options: TrainSettings
    spec: dict[str, Any]
    db_url: str
    up_to_id: int | None
    privacy: WorkerPrivacy
    pixels: tuple[list[float], list[float]] | None = None  # an image set's public pixel range


class TabularWorker:
    """:class:`inhouse.kinds.training.TrainingWorker` of the MLP."""

    def __init__(self, config: WorkerConfig, place: WorkerPlace) -> None:
        torch.set_num_threads(1)
        part: TabularWorkerConfig = config.part
        self._options, self._tensorboard, self._place = part.options, config.tensorboard_dir, place
        engine = get_engine(part.db_url)
        dataset, up_to_id = part.options.dataset, part.up_to_id
        self._plan = part.privacy.plan
        # DP needs every row (Poisson sampling); otherwise each worker reads its shard.
        self._shard = (place.rank, place.world) if self._plan is None and place.world > 1 else None
        self._train, self._test = (
            read_rows(engine, dataset, split=split, up_to_id=up_to_id, shard=self._shard)
            for split in ("train", "test")
        )
        torch.manual_seed(part.options.seed)
        model = build(part.spec)  # the MLP, or Standardize → the user's builder module
        initialise(model, part.options.init)
        if part.pixels is not None:  # images: intensities to [0, 1] (kinds.tabular.scaling)
            lo, hi = map(torch.tensor, part.pixels)
            model[0].set_bounds(lo, hi, zero_based=True)  # type: ignore[operator]
        elif self._plan is not None:  # DP: scale by public bounds, never by private statistics
            if part.privacy.scaling is None:
                raise ConfigError("a DP run reached a worker without public feature bounds")
            model[0].set_bounds(*map(torch.tensor, part.privacy.scaling))  # type: ignore[operator]
        elif self._shard is not None:  # statistics of every shard, not this one's alone
            set_statistics(model[0], *global_statistics(self._train.x, place.device))
        else:
            model[0].fit(self._train.x)  # type: ignore[operator]
        self.model: torch.nn.Module = model.to(place.device)
        options = part.options
        self.optimizer: torch.optim.Optimizer = build_optimizer(
            model.parameters(),
            name=options.optimizer,
            lr=options.lr,
            momentum=options.momentum,
            weight_decay=options.weight_decay,
        )
        self._writer: SummaryWriter | None = None
        self._private: PrivateTraining | None = None
        self._sampler: EqualBatchSampler | None = None

    def start(self, *, state: dict[str, Any] | None, start_epoch: int, wrap: Wrap) -> None:
        place, options = self._place, self._options
        if place.rank == 0:
            self._writer = SummaryWriter(self._tensorboard)
            if start_epoch == 0:  # before Opacus adds its hooks
                self._writer.add_graph(self.model, self._train.x[:1].to(place.device))
        dataset = TensorDataset(self._train.x, self._train.y)
        if self._plan is not None:
            self._private = make_private(
                model=self.model,
                optimizer=self.optimizer,
                dataset=dataset,
                plan=self._plan,
                distributed=place.world > 1,
                accountant_state=(state or {}).get("accountant"),
                ghost=True,
            )
            self._training = self._private.model
            self._stepper, self._loader = self._private.optimizer, self._private.loader
            self._schedule = self._learning_rate(self._plan.steps_per_epoch)
            return
        self._training, self._stepper = wrap(self.model), self.optimizer
        rows = len(dataset)
        total = agreed_rows(rows, place.device) if self._shard is not None else rows
        self._sampler = EqualBatchSampler(rows, total, seed=options.seed, rank=place.rank)
        self._loader = DataLoader(dataset, batch_size=options.batch_size, sampler=self._sampler)
        self._schedule = self._learning_rate(len(self._loader))

    def _learning_rate(self, steps_per_epoch: int) -> LearningRateSchedule:
        options = self._options
        return LearningRateSchedule(
            self._stepper,
            name=options.lr_schedule,
            lr=options.lr,
            steps_per_epoch=steps_per_epoch,
            epochs=options.epochs,
        )

    def epoch(self, epoch: int) -> dict[str, Any]:
        if self._sampler is not None:
            self._sampler.set_epoch(epoch)
        started = time.perf_counter()
        self._schedule.start_epoch(epoch)
        stats = train_one_epoch(
            self._training,
            self._loader,
            self._stepper,
            loss_fn=self._private.loss_fn if self._private else None,
            before_step=self._schedule,
        )
        loss_sum, correct, seen = summed(
            [stats.loss * stats.samples, stats.accuracy * stats.samples, stats.samples],
            self._place.device,
        )
        test_loss, test_accuracy = self._held_out()
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
            "epoch_seconds": time.perf_counter() - started,
            **where_it_ran(self._place.device),
        }
        if self._private is not None and self._plan is not None:
            rank0 = self._place.rank == 0
            metrics["epsilon"] = self._private.epsilon(self._plan.delta) if rank0 else 0.0
            metrics["dp_steps"] = self._private.steps()
        if self._writer is not None:
            for key in SCALARS:
                if key in metrics:
                    self._writer.add_scalar(key.replace("_", "/", 1), metrics[key], epoch)
            for name, param in self.model.named_parameters():
                self._writer.add_histogram(name, param.detach().cpu(), epoch)
            self._writer.flush()
        return metrics

    def _held_out(self) -> tuple[float, float]:
        """Test loss and accuracy; over every worker's shard when the rows are sharded."""
        n = len(self._test)
        held_out = evaluate(self.model, self._test.x, self._test.y) if n else None
        if self._shard is None:
            return (held_out.loss, held_out.accuracy) if held_out else (float("nan"),) * 2
        local = [held_out.loss * n, held_out.accuracy * n, n] if held_out else [0.0, 0.0, 0]
        loss_sum, correct, total = summed(local, self._place.device)
        return (loss_sum / total, correct / total) if total else (float("nan"),) * 2

    def checkpoint_state(self) -> dict[str, Any]:
        return {"accountant": self._private.accountant_state()} if self._private else {}

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
