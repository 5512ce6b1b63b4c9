"""Incremental retraining of a model's row window, whatever its kind; measured for the gate.

The coordinator actor calls :func:`run_retrain` in-process (a one-model retrain is seconds of
work, less than Ray Train's start-up); ``python -m inhouse.jobs.retrain`` runs the same
function as a Ray job. It is idempotent per row window: the run id (from the window) is in the
lineage of what it registers, so a resumed retrain reuses a version registered before a crash
instead of training the same rows twice.

Steps: check the data set's consumed windows and record this one
(:func:`inhouse.data.consumed.check_consumed`: a change stops the coordinator); find the
champion's kind (:func:`inhouse.kinds.kind_for_spec`); unless an earlier attempt registered
it, train and register the candidate (the kind's
:meth:`~inhouse.kinds.updating.UpdatingKind.train_candidate`); compress it like the champion
was when the settings ask and the kind compresses; measure candidate and champion on the test
split for the gate.
"""

from __future__ import annotations

import dataclasses
import time

import torch
from sqlalchemy import Engine

from inhouse import services
from inhouse.config import CoordinatorSettings, Settings
from inhouse.data.consumed import check_consumed
from inhouse.kinds import kind_for_spec
from inhouse.kinds.updating import Measured, RetrainJob, RetrainRun
from inhouse.registry import COMPRESSED_FORMAT, ModelVersion, Registry


def registered(registry: Registry, model: str, run: str) -> tuple[ModelVersion | None, ...]:
    """The float and compressed versions an earlier attempt of ``run`` registered."""
    made = [v for v in registry.versions(model) if v.lineage.get("coordinator_run") == run]
    floats = [v for v in made if v.format != COMPRESSED_FORMAT]
    packed = [v for v in made if v.format == COMPRESSED_FORMAT]
    return (floats[0] if floats else None, packed[0] if packed else None)


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


def run_retrain(settings: Settings, cs: CoordinatorSettings, job: RetrainJob) -> Measured:
    """Retrain the job's window (or finish an earlier attempt of it); measure for the gate."""
    torch.set_num_threads(cs.threads)
    engine, registry = services.engine(settings), services.registry(settings)
    kind = kind_for_spec(registry.get(cs.model, "champion").spec).updating
    # The append-only contract: consumed windows unchanged, this one recorded as consumed.
    check_consumed(engine, cs.dataset, up_to=job.up_to_id, by=job.run_id)
    run = RetrainRun(registry=registry, engine=engine, settings=cs, job=job)
    started = time.perf_counter()
    candidate, packed = registered(registry, cs.model, job.run_id)
    if candidate is None:
        candidate = kind.train_candidate(run)
    else:
        settle_resumed(engine, candidate)
    if cs.compress and packed is None:
        packed = kind.compress(run, candidate)
    measured = kind.measure(run, candidate, packed)
    shared = {
        "float_version": candidate.version,
        "compressed_version": packed.version if packed is not None else None,
        "window": [job.after_id, job.up_to_id],
        "train_seconds": candidate.metrics.get("train_seconds"),
        "retrain_seconds": time.perf_counter() - started,
        "epsilon": candidate.metrics.get("epsilon", 0.0),
        "new_train_rows": candidate.lineage["rows"].get("new_train_rows", 0),
    }
    return dataclasses.replace(measured, extra={**shared, **measured.extra})
