"""Training a tabular candidate: warm-start the champion's float MLP on new rows plus replay.

It trains on the rows ``after_id < id <= up_to_id`` plus ``replay_ratio`` times as many older
rows (optionally only the last Linear layers; DP-SGD charged to the privacy ledger for the
rows used) and registers the float candidate with its lineage, including its global feature
importance compared with the champion's.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from sqlalchemy import Engine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from inhouse.config import CoordinatorSettings, TrainSettings
from inhouse.data import DatasetInfo, describe, read_rows
from inhouse.data.rows import Rows
from inhouse.explain.lineage import importance_lineage
from inhouse.explain.patches import spec_image
from inhouse.kinds.modules import load_module, register_module
from inhouse.kinds.updating import RetrainRun, retrain_lineage
from inhouse.registry import ModelVersion, float_version
from inhouse.training import evaluate, private_run, train_one_epoch
from inhouse.training.dp import make_private


def freeze_all_but(module: nn.Module, trainable_layers: int | None) -> int:
    """Freeze every Linear layer but the last ``trainable_layers``; returns trainable params."""
    if trainable_layers is not None:
        linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        for layer in linears[: max(0, len(linears) - trainable_layers)]:
            for param in layer.parameters():
                param.requires_grad_(False)
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def replay_sample(old: Rows, count: int, *, seed: int) -> Rows:
    """``count`` rows drawn without replacement from ``old`` (all of them when fewer)."""
    if count >= len(old):
        return old
    index = torch.randperm(len(old), generator=torch.Generator().manual_seed(seed))[:count]
    index = index.sort().values
    return Rows(x=old.x[index], y=old.y[index], ids=old.ids[index])


def _private(
    module: nn.Module, data: TensorDataset, cs: CoordinatorSettings, plan: Any
) -> tuple[torch.optim.Optimizer, Any]:
    """The optimizer, and the Opacus wrapping when ``plan`` is a DP plan (else None)."""
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cs.lr)
    torch.manual_seed(cs.seed)
    if plan is None:
        return optimizer, None
    module.train()  # registry modules load in eval mode; Opacus refuses to wrap those
    private = make_private(
        model=module, optimizer=optimizer, dataset=data, plan=plan, distributed=False
    )
    return optimizer, private


def _train(
    module: nn.Module,
    data: TensorDataset,
    cs: CoordinatorSettings,
    *,
    optimizer: torch.optim.Optimizer,
    private: Any,
    delta: float | None,
) -> dict[str, Any]:
    if private is not None:
        for _ in range(cs.epochs):
            train_one_epoch(private.model, private.loader, private.optimizer)
        return {
            "epsilon": private.epsilon(delta),
            "accountant": private.accountant_state(),
            "dp_steps": private.steps(),  # counted in this process
        }
    loader = DataLoader(
        data,
        batch_size=cs.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(cs.seed),
    )
    for _ in range(cs.epochs):
        train_one_epoch(module, loader, optimizer)
    return {}


def _train_settings(cs: CoordinatorSettings) -> TrainSettings:
    return TrainSettings(
        dataset=cs.dataset,
        model=cs.model,
        epochs=cs.epochs,
        batch_size=cs.batch_size,
        lr=cs.lr,
        num_workers=1,
        **cs.dp_fields(),
        promote=False,
    )


def train_candidate(run: RetrainRun) -> ModelVersion:
    """Warm-start from the champion on the job's window + replay; register the float candidate."""
    registry, engine, cs, job = run.registry, run.engine, run.settings, run.job
    after_id, up_to_id = job.after_id, job.up_to_id
    parent = float_version(registry, registry.get(cs.model, "champion"))
    module = load_module(registry, parent)
    new = read_rows(engine, cs.dataset, split="train", after_id=after_id, up_to_id=up_to_id)
    old = read_rows(engine, cs.dataset, split="train", up_to_id=after_id)
    replay = replay_sample(old, math.ceil(len(new) * cs.replay_ratio), seed=cs.seed + up_to_id)
    x, y = torch.cat([new.x, replay.x]), torch.cat([new.y, replay.y])
    first_id = int(replay.ids.min()) if len(replay) else after_id + 1
    full: DatasetInfo = describe(engine, cs.dataset)
    used = DatasetInfo(
        **{**full.__dict__, "train_rows": len(y), "first_id": first_id, "last_id": up_to_id}
    )
    privacy = private_run.prepare(
        engine=engine, cfg=_train_settings(cs), info=used, run_name=job.run_id, num_workers=1
    )
    trainable = freeze_all_but(module, cs.trainable_layers)
    started = time.perf_counter()
    data, plan = TensorDataset(x, y), privacy.plan
    try:
        optimizer, private = _private(module, data, cs, plan)
    except BaseException:
        privacy.fail(engine, steps=0)  # refused before a row was touched: nothing spent
        raise
    try:
        history = _train(
            module,
            data,
            cs,
            optimizer=optimizer,
            private=private,
            delta=plan.delta if plan is not None else None,
        )
    except BaseException:
        privacy.fail(engine)
        raise
    seconds = time.perf_counter() - started
    for param in module.parameters():
        param.requires_grad_(True)
    test = read_rows(engine, cs.dataset, split="test", up_to_id=up_to_id)
    held_out = evaluate(module, test.x, test.y)
    lineage = retrain_lineage(
        cs,
        job,
        parent=parent,
        new_rows=len(new),
        train_rows=len(y),
        warm_start={"from_version": parent.version, "trainable_parameters": trainable},
    )
    lineage["rows"]["test_rows"] = len(test)
    lineage["privacy"] = privacy.lineage(reported_steps=history.get("dp_steps"))
    background = _background(engine, cs, parent, privacy)
    lineage.update(
        importance_lineage(
            module.eval(),
            background,
            feature_names=list(parent.spec.get("feature_names", [])),
            champion_lineage=registry.full_lineage(parent),
            image=spec_image(parent.spec),
        )
    )
    metrics = {
        "test_accuracy": held_out.accuracy,
        "test_loss": held_out.loss,
        "train_seconds": seconds,
        "epsilon": float(history.get("epsilon", 0.0)),
    }
    version = register_module(
        registry, cs.model, module=module, spec=parent.spec, metrics=metrics, lineage=lineage
    )
    privacy.settle(engine, reported_steps=history.get("dp_steps"), version=version.version)
    return version


def _background(
    engine: Engine,
    cs: CoordinatorSettings,
    parent: ModelVersion,
    privacy: private_run.PrivateRun,
) -> torch.Tensor:
    """The rows the parent's global importance was measured on, so both use the same rows
    and coalitions and their rank correlation shows the models' difference, not sampling noise.

    A DP run explains on public-bounds noise instead (no release about private rows).
    """
    if privacy.bounds is None:
        rows = parent.lineage.get("rows") or {}
        return read_rows(engine, cs.dataset, split="train", up_to_id=rows.get("up_to_id")).x
    lo, hi = (torch.tensor(b) for b in privacy.bounds)
    return lo + (hi - lo) * torch.rand(256, len(lo), generator=torch.Generator().manual_seed(0))
