"""One coordinator step, without Ray: observe the stream -> decide -> act -> commit.

:class:`Coordinator` is what the Ray actor runs in its loop. The retrain itself is injected
(:func:`inhouse.coordinator.retrain.run_retrain` in the actor), so this class only sequences
durable decisions: the job is committed before it runs, and its outcome (watermark, alias
moves, history) is committed in one transaction after, so a crash at any point resumes
exactly. A candidate that passed the gate is watched as a canary
(:mod:`inhouse.coordinator.canary`) on the traffic the ingress recorded, then promoted or
rolled back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Engine

from inhouse.canary import read_traffic
from inhouse.config import CoordinatorSettings
from inhouse.coordinator.canary import Feedback, judge_canary
from inhouse.coordinator.decide import Decision, Policy
from inhouse.coordinator.feedback import feedback
from inhouse.coordinator.gate import GateResult, judge
from inhouse.coordinator.state import CoordinatorState, CoordinatorStore, Event
from inhouse.coordinator.triggers import Drift, Observation, drift
from inhouse.data import read_rows
from inhouse.data.stream import position
from inhouse.errors import ConflictError, DataChangedError
from inhouse.kinds.updating import Measured, RetrainJob
from inhouse.registry import Registry

RetrainFn = Callable[[CoordinatorSettings, RetrainJob], Measured]
MANUAL = "retrain_requested"


@dataclass(frozen=True)
class StepReport:
    """What one step did (the actor turns it into metrics)."""

    action: str
    reason: str
    events: list[Event] = field(default_factory=list)
    measured: Measured | None = None
    gate: GateResult | None = None
    figures: dict[str, Any] = field(default_factory=dict)


class Coordinator:
    """Keeps one model up to date from its data stream."""

    def __init__(
        self,
        *,
        engine: Engine,
        registry: Registry,
        settings: CoordinatorSettings,
        retrain: RetrainFn,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.settings = settings
        self.store = CoordinatorStore(engine)
        self.policy = Policy(settings)
        self.retrain = retrain
        self.clock = clock
        self._drift_cache: tuple[tuple[int, int], Drift | None] | None = None

    # --- observing --------------------------------------------------------------------------

    def _drift(self, state: CoordinatorState, max_row_id: int, new_rows: int) -> Drift | None:
        cs = self.settings
        if cs.drift_threshold is None or new_rows < cs.drift_min_rows:
            return None
        key = (state.watermark, max_row_id)
        if self._drift_cache is not None and self._drift_cache[0] == key:
            return self._drift_cache[1]
        current = read_rows(self.engine, cs.dataset, split="train", after_id=state.watermark)
        reference = read_rows(self.engine, cs.dataset, split="train", up_to_id=state.watermark)
        found = None
        if len(reference) and len(current):
            ref = reference.x[-cs.drift_reference_rows :].numpy()
            found = drift(ref, np.asarray(current.x.numpy()), test=cs.drift_test)
        self._drift_cache = (key, found)
        return found

    def observe(self, state: CoordinatorState) -> Observation:
        """The stream's position and drift above the state's watermark."""
        where = position(self.engine, self.settings.dataset, after_id=state.watermark)
        return Observation(
            now=self.clock(),
            max_row_id=where.max_row_id,
            new_rows=where.new_train_rows,
            drift=self._drift(state, where.max_row_id, where.new_train_rows),
        )

    # --- acting -----------------------------------------------------------------------------

    def _commit(self, decision: Decision) -> CoordinatorState:
        return self.store.commit(
            decision.state, events=decision.events, aliases=decision.aliases or None
        )

    def _sync_champion(self, state: CoordinatorState) -> CoordinatorState:
        """Follow a champion moved, or a canary stopped, outside the coordinator (rollback,
        manual promotion): a canary whose champion or ``candidate`` alias changed is over."""
        aliases = self.registry.aliases(self.settings.model)
        champion = aliases.get("champion")
        canary = state.canary
        canary_gone = canary is not None and (
            aliases.get("candidate") != canary.version or champion != canary.champion_version
        )
        if champion == state.champion_version and not canary_gone:
            return state
        events = []
        if champion != state.champion_version:
            events.append(
                Event("champion_changed", {"from": state.champion_version, "to": champion})
            )
        moves: dict[str, int | None] = {}
        if canary_gone and canary is not None:
            events.append(Event("canary_aborted", {"candidate_version": canary.version}))
            if aliases.get("candidate") == canary.version:
                moves["candidate"] = None
        fresh = state.replace(champion_version=champion, canary=None if canary_gone else canary)
        return self.store.commit(fresh, events=events, aliases=moves or None)

    def step(self) -> StepReport:
        """Observe, decide, act and commit once; returns what happened."""
        state = self._sync_champion(self.store.load(self.settings.model))
        observation = self.observe(state)
        manual_id = self.store.latest_event_id(self.settings.model, MANUAL)
        decision = self.policy.decide(state, observation, manual_id=manual_id)
        if decision.action in ("wait", "stop"):
            if decision.changed:
                self._commit(decision)
            return StepReport(decision.action, decision.reason, decision.events)
        if decision.action == "canary":
            return self._watch_canary(state)
        if decision.action == "retrain":  # the job is durable before any work starts
            state = self._commit(decision)
        return self._run(state, decision.events)

    # --- canary -----------------------------------------------------------------------------

    def _feedback(self, state: CoordinatorState, candidate: int, champion: int) -> Feedback | None:
        """Both versions' accuracy on the labelled rows that arrived after the retrain window."""
        return feedback(
            self.registry,
            self.engine,
            model=self.settings.model,
            dataset=self.settings.dataset,
            after_id=state.watermark,
            candidate=candidate,
            champion=champion,
            min_rows=self.settings.canary_min_feedback_rows,
        )

    def _watch_canary(self, state: CoordinatorState) -> StepReport:
        canary = state.canary
        assert canary is not None
        now = self.clock()
        model = self.settings.model
        judgement = judge_canary(
            canary,
            candidate=read_traffic(self.engine, model, canary.version, since=canary.started_at),
            champion=read_traffic(
                self.engine, model, canary.champion_version, since=canary.started_at
            ),
            feedback=(
                self._feedback(state, canary.version, canary.champion_version)
                if now >= canary.ends_at
                else None
            ),
            settings=self.settings,
            now=now,
        )
        if judgement.verdict == "watch":
            return StepReport("canary", "; ".join(judgement.reasons))
        ended = self.policy.canary_ended(state, judgement)
        self._commit(ended)
        action = "promoted" if judgement.verdict == "promote" else "rolled_back"
        return StepReport(action, ended.reason, ended.events, figures=judgement.figures)

    def _run(self, state: CoordinatorState, started: list[Event]) -> StepReport:
        job = RetrainJob.model_validate(state.job or {})
        try:
            measured = self.retrain(self.settings, job)
        except DataChangedError as exc:  # consumed rows changed: stop, retrying cannot help
            stopped = self.policy.data_changed(state, exc.message)
            self._commit(stopped)
            return StepReport("stopped", stopped.reason, started + stopped.events)
        except Exception as exc:  # any failure: back off, keep the watermark
            failed = self.policy.failed(state, f"{type(exc).__name__}: {exc}", now=self.clock())
            self._commit(failed)
            return StepReport("failed", failed.reason, started + failed.events)
        gate = judge(measured, self.settings)
        current = self.registry.aliases(self.settings.model).get("champion")
        if gate.promote and current != measured.champion_version:
            gate = GateResult(
                verdict="reject",
                reasons=[f"the champion moved to v{current} during the retrain"],
                candidate_version=gate.candidate_version,
                champion_version=current,
                figures=gate.figures,
            )
        done = self.policy.completed(state, gate, now=self.clock())
        try:
            self._commit(done)
        except ConflictError:  # e.g. `coordinator stop` meanwhile: redo on the fresh state
            fresh = self.store.load(self.settings.model)
            if fresh.job is None or fresh.job.get("run_id") != job.run_id:
                raise
            done = self.policy.completed(fresh, gate, now=self.clock())
            self._commit(done)
        action = "canary_started" if done.state.canary is not None else gate.verdict
        return StepReport(action, done.reason, started + done.events, measured, gate)
