"""Training a text candidate: a LoRA (or head-only) adapter on the new rows plus replay.

The candidate is an adapter version registered against the champion's base model, so a
retrain stores only the LoRA matrices and the head:

- champion = a full classifier (or its int8 version): a fresh adapter on its float weights;
- champion = an adapter of the same method: the new adapter starts from the champion's
  adapter weights (warm start) on the same base, so what earlier retrains learnt is kept.

It trains on the rows ``after_id < id <= up_to_id`` plus ``replay_ratio`` times as many older
rows (with ``dp``: DP-SGD through Opacus, planned and charged to the privacy ledger before a
row is read).
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

import torch

from inhouse.config import CoordinatorSettings, TextTrainOptions
from inhouse.data import DatasetInfo, describe
from inhouse.data.text_import import TextRows, read_text_rows
from inhouse.kinds.modules import load_module
from inhouse.kinds.text.epochs import train_epoch
from inhouse.kinds.text.private import (
    check_private,
    prepare_text,
    row_dataset,
    train_epoch_private,
)
from inhouse.kinds.text.versions import load_text, register_adapter
from inhouse.kinds.updating import RetrainRun, retrain_lineage
from inhouse.models.lora import lora_config, prepare_incremental, trainable_fraction
from inhouse.models.text import TextModel, classifier_from
from inhouse.registry import ModelVersion, Registry, float_version
from inhouse.training.dp import make_private
from inhouse.training.private_run import PrivateRun


def replay_rows(new: TextRows, old: TextRows, ratio: float, *, seed: int) -> TextRows:
    """The new rows plus ``ceil(len(new) * ratio)`` older ones drawn without replacement."""
    count = min(len(old), math.ceil(len(new) * ratio))
    picked = sorted(random.Random(seed).sample(range(len(old)), count))
    return TextRows(
        texts=new.texts + [old.texts[i] for i in picked],
        labels=new.labels + [old.labels[i] for i in picked],
        ids=new.ids + [old.ids[i] for i in picked],
    )


def starting_point(
    registry: Registry, champion: ModelVersion, method: str
) -> tuple[ModelVersion, ModelVersion | None, dict[str, Any] | None]:
    """``(base, warm adapter or None, lora settings)`` a retrain of ``champion`` starts from."""
    current = float_version(registry, champion)
    if current.spec.get("role") != "adapter":
        return current, None, lora_config() if method == "lora" else None
    base = registry.get(current.spec["base"]["model"], str(current.spec["base"]["version"]))
    if current.spec.get("method") != method:  # another method: a fresh adapter on the base
        return base, None, lora_config() if method == "lora" else None
    return base, current, current.spec.get("lora")


def _model(
    registry: Registry,
    base: ModelVersion,
    warm: ModelVersion | None,
    *,
    method: str,
    lora: dict[str, Any] | None,
    seed: int,
) -> tuple[TextModel, Any, dict[str, Any]]:
    """The trainable classifier: the base, the method's freezing, the warm adapter loaded."""
    start, tokenizer, base_spec = load_text(registry, base)
    torch.manual_seed(seed)
    model, spec = classifier_from(
        start,
        base_spec,
        class_names=list(base_spec["class_names"]),
        max_length=int(base_spec["max_length"]),
    )
    prepare_incremental(model, method, lora=lora)
    if warm is not None:
        weights = load_module(registry, warm).state_dict()
        if method == "lora":
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(model.hf, weights)
        else:
            model.hf.load_state_dict(weights, strict=False)
    return model, tokenizer, spec


def _options(cs: CoordinatorSettings, base: ModelVersion, max_length: int) -> TextTrainOptions:
    return TextTrainOptions(
        dataset=cs.dataset,
        model=cs.model,
        base=f"{base.model}:{base.version}",
        method=cs.text_method,
        epochs=cs.epochs,
        batch_size=cs.batch_size,
        lr=cs.lr,
        max_length=max_length,
        seed=cs.seed,
        num_workers=1,
        **cs.dp_fields(),
    )


def _train(
    model: TextModel,
    tokenizer: Any,
    rows: TextRows,
    options: TextTrainOptions,
    privacy: PrivateRun,
) -> dict[str, Any]:
    """Train in-process (DP-SGD through Opacus when the run has a plan); the history."""
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=options.learning_rate()
    )
    plan = privacy.plan
    if plan is None:
        for epoch in range(options.epochs):
            stats = train_epoch(model, tokenizer, rows, optimizer, options=options, epoch=epoch)
        return {"train_accuracy": stats["correct"] / max(stats["seen"], 1)}
    model.train()  # registry modules load in eval mode; Opacus refuses to wrap those
    private = make_private(
        model=model,
        optimizer=optimizer,
        dataset=row_dataset(rows, options),
        plan=plan,
        distributed=False,
    )
    for epoch in range(options.epochs):
        stats = train_epoch_private(
            private.model,
            tokenizer,
            rows,
            private.optimizer,
            private.loader,
            options=options,
            epoch=epoch,
            device=torch.device("cpu"),
        )
    return {
        "train_accuracy": stats["correct"] / max(stats["seen"], 1),
        "epsilon": private.epsilon(plan.delta),
        "accountant": private.accountant_state(),
        "dp_steps": private.steps(),  # counted in this process
    }


def train_candidate(run: RetrainRun) -> ModelVersion:
    """Train the window's adapter (new rows + replay) and register it against the base; a DP
    retrain is planned and charged to the privacy ledger before a row is read."""
    registry, engine, cs, job = run.registry, run.engine, run.settings, run.job
    after_id, up_to_id = job.after_id, job.up_to_id
    champion = registry.get(cs.model, "champion")
    base, warm, lora = starting_point(registry, champion, cs.text_method)
    model, tokenizer, spec = _model(
        registry, base, warm, method=cs.text_method, lora=lora, seed=cs.seed
    )
    options = _options(cs, base, int(spec["max_length"]))
    if cs.dp:
        check_private(model, tokenizer, options)  # refuses layers Opacus cannot clip
    new = read_text_rows(engine, cs.dataset, split="train", after_id=after_id, up_to_id=up_to_id)
    old = read_text_rows(engine, cs.dataset, split="train", up_to_id=after_id)
    rows = replay_rows(new, old, cs.replay_ratio, seed=cs.seed + up_to_id)
    full = describe(engine, cs.dataset)
    first_id = min(rows.ids, default=after_id + 1)  # the oldest replayed row is charged too
    used = DatasetInfo(
        **{**full.__dict__, "train_rows": len(rows), "first_id": first_id, "last_id": up_to_id}
    )
    privacy = prepare_text(engine=engine, options=options, info=used, run_name=job.run_id)
    started = time.perf_counter()
    try:
        history = _train(model, tokenizer, rows, options, privacy)
    except BaseException:
        privacy.fail(engine)
        raise
    seconds = time.perf_counter() - started
    lineage = retrain_lineage(
        cs,
        job,
        parent=champion,
        new_rows=len(new),
        train_rows=len(rows),
        warm_start={
            "from_version": warm.version if warm is not None else None,
            "method": cs.text_method,
            "trainable_fraction": trainable_fraction(model),
        },
    )
    lineage["privacy"] = privacy.lineage(reported_steps=history.get("dp_steps"))
    metrics = {
        "train_accuracy": history["train_accuracy"],
        "train_seconds": seconds,
        "trainable_fraction": trainable_fraction(model),
        "method": cs.text_method,
        "epsilon": float(history.get("epsilon", 0.0)),
    }
    version = register_adapter(
        registry,
        cs.model,
        model=model.eval(),
        method=cs.text_method,
        base=base,
        class_names=list(spec["class_names"]),
        max_length=int(spec["max_length"]),
        lora=lora,
        metrics=metrics,
        lineage=lineage,
    )
    privacy.settle(engine, reported_steps=history.get("dp_steps"), version=version.version)
    return version
