"""One worker of a text fine-tuning run: its shard, the classifier, DDP or DP-SGD.

Without DP the worker trains its shard of the rows (equal step counts across workers) with DDP,
rank 0 first warming up a new head when asked (DDP then starts every worker from rank 0's
weights). With DP, Opacus wraps the worker (``DPDDP`` across workers, its Poisson sampler over
the row indices instead of a shard); its accountant goes into each checkpoint and is restored
from it on resume, so a resumed run keeps the epsilon it had spent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from inhouse.config import SettingsPayload, TextTrainOptions
from inhouse.data.text_import import read_text_rows
from inhouse.kinds.text.epochs import evaluate_texts, shard, train_epoch
from inhouse.kinds.text.head import head_features, warm_head
from inhouse.kinds.text.private import row_dataset, train_epoch_private
from inhouse.kinds.text.start import start_model
from inhouse.kinds.training import WorkerConfig, WorkerPlace, Wrap, summed, where_it_ran
from inhouse.schema import get_engine
from inhouse.training import unwrap
from inhouse.training.dp import PrivateTraining, make_private
from inhouse.training.private_run import WorkerPrivacy


@dataclass(frozen=True)
class TextWorkerConfig:
    """The text part of what every worker receives: the run's options, the settings (loaded
    on the worker's node), the data set's classes, the last row id the driver saw and the
    run's privacy."""

    options: TextTrainOptions
    settings: SettingsPayload
    class_names: list[str]
    up_to_id: int | None
    privacy: WorkerPrivacy


class TextWorker:
    """:class:`inhouse.kinds.training.TrainingWorker` of a text classifier."""

    def __init__(self, config: WorkerConfig, place: WorkerPlace) -> None:
        part: TextWorkerConfig = config.part
        options = part.options
        torch.set_num_threads(options.threads_per_worker)
        self._options, self._place = options, place
        settings = part.settings.load()
        engine = get_engine(settings.db_url)
        up_to_id = part.up_to_id
        self._train = read_text_rows(engine, options.dataset, split="train", up_to_id=up_to_id)
        self._probe = read_text_rows(engine, options.dataset, split="test", up_to_id=up_to_id)
        model, self._tokenizer, _spec, _base = start_model(settings, options, part.class_names)
        self.model: torch.nn.Module = model.to(place.device)
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer: torch.optim.Optimizer = torch.optim.AdamW(
            trainable, lr=options.learning_rate()
        )
        self._plan = part.privacy.plan
        self._private: PrivateTraining | None = None
        self._training: torch.nn.Module = self.model

    def start(self, *, state: dict[str, Any] | None, start_epoch: int, wrap: Wrap) -> None:
        options, place = self._options, self._place
        if self._plan is not None:
            self.model.train()  # Opacus refuses a module in eval mode (a registered base loads so)
            self._private = make_private(
                model=self.model,
                optimizer=self.optimizer,
                dataset=row_dataset(self._train, options),
                plan=self._plan,
                distributed=place.world > 1,
                accountant_state=(state or {}).get("accountant"),
            )
            return
        if options.head_epochs and start_epoch == 0 and place.rank == 0:
            # DDP starts every worker from rank 0's weights, warmed head included.
            rows = shard(self._train, options=options, epoch=0, rank=0, world=1)
            texts = [self._train.texts[i] for i in rows]
            features = head_features(
                self.model, self._tokenizer, texts, max_length=options.max_length
            )
            warm_head(
                self.model,
                features,
                [self._train.labels[i] for i in rows],
                epochs=options.head_epochs,
                lr=options.head_lr,
                train_pooler=options.method == "full",
                seed=options.seed,
            )
        self._training = wrap(self.model) if place.world > 1 else self.model

    def epoch(self, epoch: int) -> dict[str, Any]:
        options, place = self._options, self._place
        started = time.perf_counter()
        if self._private is not None:
            stats = train_epoch_private(
                self._private.model,
                self._tokenizer,
                self._train,
                self._private.optimizer,
                self._private.loader,
                options=options,
                epoch=epoch,
                device=place.device,
            )
        else:
            stats = train_epoch(
                self._training,
                self._tokenizer,
                self._train,
                self.optimizer,
                options=options,
                epoch=epoch,
                rank=place.rank,
                world=place.world,
                device=place.device,
            )
        loss_sum, correct, seen = summed(
            [stats["loss_sum"], stats["correct"], stats["seen"]], place.device
        )
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": loss_sum / max(seen, 1.0),
            "train_accuracy": correct / max(seen, 1.0),
            **where_it_ran(place.device),
            "amp": stats["amp"],
            "probe_accuracy": evaluate_texts(
                unwrap(self._training),
                self._tokenizer,
                self._probe,
                options,
                limit=options.probe_rows,
                device=place.device,
            ),
        }
        if self._private is not None and self._plan is not None:
            rank0 = place.rank == 0
            metrics["epsilon"] = self._private.epsilon(self._plan.delta) if rank0 else 0.0
            metrics["dp_steps"] = self._private.steps()
        metrics["epoch_seconds"] = time.perf_counter() - started
        return metrics

    def checkpoint_state(self) -> dict[str, Any]:
        return {"accountant": self._private.accountant_state()} if self._private else {}

    def close(self) -> None:
        """Nothing to release."""
