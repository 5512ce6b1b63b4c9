"""Register what a tabular training run produced: evaluate on the test split, explain, version,
promote, compress.

The version's lineage names its rows, its settings, the code and the run, its privacy (epsilon
and the mechanism of a DP run) and its global explanation next to the champion's. The privacy
ledger is settled with the driver's own step count before the champion moves.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from sqlalchemy import Engine

from inhouse import services
from inhouse.config import Settings, TrainSettings
from inhouse.data import DatasetInfo, read_rows
from inhouse.errors import ModelNotFoundError
from inhouse.explain.lineage import importance_lineage
from inhouse.explain.patches import spec_image
from inhouse.kinds.modules import register_module
from inhouse.kinds.training import Trained, TrainingRun
from inhouse.registry import Registry
from inhouse.training import evaluate
from inhouse.training.private_run import PrivateRun


def global_explanation(
    registry: Registry,
    options: TrainSettings,
    model: torch.nn.Module,
    engine: Engine,
    info: DatasetInfo,
    spec: dict[str, Any],
    privacy: PrivateRun,
) -> dict[str, Any]:
    """Mean |SHAP| per feature on training rows, compared with the current champion's.

    A DP version is explained on points drawn from its public feature bounds instead: the
    attributions of private rows would be a release the privacy budget does not cover.
    """
    try:
        # the champion's global importance is a statistic of rows: only its lineage file has it
        champion_lineage: dict[str, Any] | None = registry.full_lineage(registry.get(options.model))
    except ModelNotFoundError:
        champion_lineage = None
    if privacy.bounds is not None:
        lo, hi = (torch.tensor(b) for b in privacy.bounds)
        background = lo + (hi - lo) * torch.rand(
            256, len(lo), generator=torch.Generator().manual_seed(0)
        )
    else:
        background = read_rows(engine, options.dataset, split="train", up_to_id=info.last_id).x
    return importance_lineage(
        model.eval(),
        background,
        feature_names=spec["feature_names"],
        champion_lineage=champion_lineage,
        image=spec_image(spec),
    )


def compress_new(
    registry: Registry, engine: Engine, options: TrainSettings, version: int
) -> dict[str, Any]:
    """Prune + int8 the new version; the compressed one becomes champion if it passes the gate.

    A DP version is only quantized: pruning fine-tunes on the rows without noise, which
    would spend privacy the ledger never charged; int8 alone is post-processing.
    """
    from inhouse.config import CompressionSettings, GateSettings
    from inhouse.kinds.tabular.compression import compress_version

    settings = CompressionSettings(prune_amount=0.0, finetune_epochs=0) if options.dp else None
    result = compress_version(
        registry=registry,
        engine=engine,
        model=options.model,
        ref=str(version),
        settings=settings or CompressionSettings(),
        gate=GateSettings(),
        promote=options.promote,
    )
    keys = ("version", "promoted", "message", "test_accuracy", "size_ratio", "fidelity")
    return {key: result[key] for key in keys} | {"gate_passed": result["gate"]["passed"]}


def run_lineage(
    dataset: str, info: DatasetInfo, *, run_name: str, run_dir: str, config: dict[str, Any]
) -> dict[str, Any]:
    """The lineage every first version of a run starts from: its rows, settings, code, run."""
    return {
        "dataset": dataset,
        "rows": {
            "first_id": info.first_id,
            "up_to_id": info.last_id,
            "train_rows": info.train_rows,
            "test_rows": info.test_rows,
        },
        "config": config,
        "code_revision": os.environ.get("INHOUSE_CODE_REVISION", "unknown"),
        "run": run_name,
        "run_dir": run_dir,
        "parent": None,
    }


def register_run(
    settings: Settings,
    options: TrainSettings,
    run: TrainingRun,
    trained: Trained,
) -> dict[str, Any]:
    """Evaluate ``run.model`` (the final weights), register it, settle, promote, compress."""
    engine = services.engine(settings)
    info: DatasetInfo = run.state["info"]
    spec: dict[str, Any] = run.state["spec"]
    model, privacy = run.model, run.privacy
    history, seconds = trained.history, trained.seconds
    dp_steps = trained.reported.get("dp_steps")  # reported through Ray, not a file
    test = read_rows(engine, options.dataset, split="test", up_to_id=info.last_id)
    final = evaluate(model, test.x, test.y)
    registry = services.registry(settings)
    metrics = {
        "test_accuracy": final.accuracy,
        "test_loss": final.loss,
        "train_accuracy": history["train_accuracy"],
        "resumed_from_epoch": history["resumed_from_epoch"],
        "train_seconds": seconds,
    }
    lineage = run_lineage(
        options.dataset,
        info,
        run_name=run.name,
        run_dir=str(run.directory),
        config=options.model_dump(),
    )
    lineage["privacy"] = privacy.lineage(reported_steps=dp_steps)
    if options.builder:
        from inhouse.kinds.tabular.user_model import builder_lineage

        lineage["builder"] = builder_lineage(options.builder, spec["kwargs"])
    lineage.update(global_explanation(registry, options, model, engine, info, spec, privacy))
    version = register_module(
        registry, options.model, module=model, spec=spec, metrics=metrics, lineage=lineage
    )
    privacy.settle(engine, reported_steps=dp_steps, version=version.version)
    if options.promote:
        registry.set_alias(options.model, "champion", version.version)
    compressed = (
        compress_new(registry, engine, options, version.version) if options.compress else None
    )
    served = registry.resolve(options.model, "champion") if options.promote else None
    return {
        "compressed": compressed,
        "served_version": served,
        "model": options.model,
        "version": version.version,
        "champion": options.promote,
        "test_accuracy": final.accuracy,
        "train_seconds": round(seconds, 2),
        "epochs": options.epochs,
        "num_workers": options.num_workers,
        "backend": history.get("backend"),
        "privacy": lineage["privacy"],
        "device": history.get("device"),
        "tensorboard": f"tensorboard --logdir {run.directory / 'tensorboard'}",
        "run_dir": str(run.directory),
    }
