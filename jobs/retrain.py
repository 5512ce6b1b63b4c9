"""Incremental retraining: warm-start from the champion on new rows plus a replay sample.

The coordinator actor calls :func:`run_retrain` in-process (a one-model MLP retrain is
seconds of work, less than Ray Train's start-up); ``python -m jobs.retrain`` runs the same
function as a Ray job. It is idempotent per row window: the run id (from the window) is in
the lineage of what it registers, so a resumed retrain reuses a version registered before a
crash instead of training the same rows twice.

Steps: load the champion's float weights (the compressed champion's parent), train on the
rows ``after_id < id <= up_to_id`` plus ``replay_ratio`` times as many older rows (optionally
only the last Linear layers; DP-SGD charged to the privacy ledger for the rows used), register
the float candidate with lineage, compress it like the champion was, and measure candidate and
champion on the test split for the gate.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

import torch
from sqlalchemy import Engine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from inhouse import services
from inhouse.compress.report import accuracy, latency_ms
from inhouse.config import CoordinatorSettings, Settings, TrainSettings, load_settings
from inhouse.coordinator import Measured
from inhouse.data import DatasetInfo, describe, read_rows
from inhouse.data.store import Rows
from inhouse.explain.importance import GlobalImportance, compare_importance
from inhouse.explain.lineage import importance_lineage
from inhouse.models.text import TEXT_KIND
from inhouse.registry import ModelVersion, Registry
from inhouse.training import evaluate, private_run, train_one_epoch
from inhouse.training.dp import make_private

COMPRESSED = "compressed"


def float_version(registry: Registry, info: ModelVersion) -> ModelVersion:
    """The float version behind ``info`` (itself unless it is a compressed artifact)."""
    if info.format != COMPRESSED:
        return info
    return registry.get(info.model, str(info.lineage["parent"]["version"]))


def registered(registry: Registry, model: str, run: str) -> tuple[ModelVersion | None, ...]:
    """The float and compressed versions an earlier attempt of ``run`` registered."""
    made = [v for v in registry.versions(model) if v.lineage.get("coordinator_run") == run]
    floats = [v for v in made if v.format != COMPRESSED]
    packed = [v for v in made if v.format == COMPRESSED]
    return (floats[0] if floats else None, packed[0] if packed else None)


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


def train_candidate(
    registry: Registry, engine: Engine, cs: CoordinatorSettings, job: dict[str, Any]
) -> ModelVersion:
    """Warm-start from the champion on the job's window + replay; register the float candidate."""
    after_id, up_to_id, run = int(job["after_id"]), int(job["up_to_id"]), str(job["run_id"])
    parent = float_version(registry, registry.get(cs.model, "champion"))
    module = registry.load_module(parent)
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
        engine=engine, cfg=_train_settings(cs), info=used, run_name=run, num_workers=1
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
    lineage: dict[str, Any] = {
        "dataset": cs.dataset,
        "rows": {
            "first_id": after_id + 1,
            "up_to_id": up_to_id,
            "new_train_rows": len(new),
            "replay_rows": len(replay),
            "replay_up_to_id": after_id,
            "train_rows": len(y),
            "test_rows": len(test),
        },
        "parent": {"model": cs.model, "version": parent.version},
        "warm_start": {"from_version": parent.version, "trainable_parameters": trainable},
        "config": cs.model_dump(mode="json"),
        "coordinator_run": run,
        "trigger": list(job.get("reasons", [])),
        "run": run,
    }
    lineage["privacy"] = privacy.lineage(reported_steps=history.get("dp_steps"))
    background = _background(engine, cs, parent, privacy)
    lineage.update(
        importance_lineage(
            module.eval(),
            background,
            feature_names=list(parent.spec.get("feature_names", [])),
            champion_lineage=registry.full_lineage(parent),
        )
    )
    metrics = {
        "test_accuracy": held_out.accuracy,
        "test_loss": held_out.loss,
        "train_seconds": seconds,
        "epsilon": float(history.get("epsilon", 0.0)),
    }
    version = registry.register(
        cs.model, module=module, spec=parent.spec, metrics=metrics, lineage=lineage
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


def _compress(registry: Registry, engine: Engine, cs: CoordinatorSettings, ref: int) -> None:
    """Compress the candidate with the settings the champion was compressed with."""
    from inhouse.compress.versioning import compress_version
    from inhouse.config import CompressionSettings, GateSettings

    champion = registry.get(cs.model, "champion")
    if champion.format == COMPRESSED:
        settings = CompressionSettings.model_validate(champion.lineage.get("compression", {}))
        gate = GateSettings.model_validate(champion.lineage.get("gate", {}).get("settings", {}))
    else:
        settings, gate = CompressionSettings(), GateSettings()
    if cs.dp:  # pruning fine-tunes without noise: DP versions are only quantized
        settings = settings.model_copy(update={"prune_amount": 0.0, "finetune_epochs": 0})
    compress_version(
        registry=registry,
        engine=engine,
        model=cs.model,
        ref=str(ref),
        settings=settings,
        gate=gate,
        promote=False,
    )


def _spearman(registry: Registry, champion: ModelVersion, candidate: ModelVersion) -> float | None:
    # global importances are statistics of rows, kept in the (encrypted) lineage files only
    ours, theirs = (
        registry.full_lineage(champion).get("global_importance"),
        registry.full_lineage(candidate).get("global_importance"),
    )
    if not ours or not theirs:
        return None
    old, new = GlobalImportance.from_dict(ours), GlobalImportance.from_dict(theirs)
    return float(compare_importance(old, new).spearman)


def settle_resumed(engine: Engine, candidate: ModelVersion) -> None:
    """A DP candidate registered by an attempt that died before settling its charge: settle
    it now, once, with the steps its lineage records (never fewer than were planned)."""
    privacy = candidate.lineage.get("privacy") or {}
    charge_id = privacy.get("charge_id")
    if not privacy.get("dp") or charge_id is None:
        return
    from inhouse.privacy import PrivacyLedger

    ledger = PrivacyLedger(engine)
    charge = ledger.charge(int(charge_id))
    if charge.status == "reserved":
        steps = max(int(privacy["steps"]), charge.planned_steps)
        ledger.settle(charge.id, steps=steps, version=candidate.version)


def run_retrain(settings: Settings, cs: CoordinatorSettings, job: dict[str, Any]) -> Measured:
    """Retrain the job's window (or finish an earlier attempt of it); measure for the gate.

    Text models are retrained by :func:`jobs.retrain_text.run_text_retrain` (adapters).
    """
    torch.set_num_threads(cs.threads)
    engine, registry = services.engine(settings), services.registry(settings)
    if registry.get(cs.model, "champion").spec.get("kind") == TEXT_KIND:
        from jobs.retrain_text import run_text_retrain

        return run_text_retrain(settings, cs, job)
    run = str(job["run_id"])
    candidate, packed = registered(registry, cs.model, run)
    started = time.perf_counter()
    if candidate is None:
        candidate = train_candidate(registry, engine, cs, job)
    else:
        settle_resumed(engine, candidate)
    if cs.compress and packed is None:
        _compress(registry, engine, cs, candidate.version)
        packed = registered(registry, cs.model, run)[1]
    served = packed if packed is not None and packed.metrics.get("gate_passed") else candidate
    champion = registry.get(cs.model, "champion")
    test = read_rows(engine, cs.dataset, split="test", up_to_id=int(job["up_to_id"]))
    served_module, champion_module = registry.load_module(served), registry.load_module(champion)
    probe = test.x[:1]
    return Measured(
        candidate_version=served.version,
        candidate_accuracy=accuracy(served_module, test.x, test.y) / 100.0,
        candidate_latency_ms=latency_ms(served_module, probe, threads=1),
        champion_version=champion.version,
        champion_accuracy=accuracy(champion_module, test.x, test.y) / 100.0,
        champion_latency_ms=latency_ms(champion_module, probe, threads=1),
        importance_spearman=_spearman(registry, float_version(registry, champion), candidate),
        extra={
            "float_version": candidate.version,
            "compressed_version": packed.version if packed is not None else None,
            "window": [int(job["after_id"]), int(job["up_to_id"])],
            "train_seconds": candidate.metrics.get("train_seconds"),
            "retrain_seconds": time.perf_counter() - started,
            "epsilon": candidate.metrics.get("epsilon", 0.0),
            "new_train_rows": candidate.lineage["rows"].get("new_train_rows", 0),
            "test_rows": len(test),
        },
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.retrain --model digits --after-id N --up-to-id M`` (no gate, no alias)."""
    parser = argparse.ArgumentParser(prog="python -m jobs.retrain", description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--after-id", type=int, required=True)
    parser.add_argument("--up-to-id", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args(argv)
    cs = CoordinatorSettings.parse(
        {"model": args.model, "dataset": args.dataset, "epochs": args.epochs}
    )
    from inhouse.coordinator import run_id

    job = {
        "run_id": run_id(args.model, args.after_id, args.up_to_id),
        "after_id": args.after_id,
        "up_to_id": args.up_to_id,
        "reasons": ["job"],
    }
    measured = run_retrain(load_settings(), cs, job)
    print(json.dumps(measured.__dict__, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
