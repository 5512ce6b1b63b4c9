"""The coordinator's decisions, as a plain class: state + observation -> action + next state.

Rules it enforces (unit-tested without Ray or a database):

- one retrain per model at a time: while a job is recorded in the state the only action is to
  ``resume`` it (a restarted actor finishes or redoes exactly that window);
- the watermark (last row id consumed) advances only when a retrain completed, promoted or
  not; a failed retrain leaves it, so its rows are retried, after an exponential, capped
  backoff;
- a retrain needs at least one new training row and one trigger (rows, schedule, drift,
  manual);
- a candidate that passed the gate becomes a canary (alias ``candidate``, a share of the
  traffic) when ``canary_share`` > 0 and there is a champion; no retrain starts while a canary
  runs; the canary ends promoted (``champion`` moves, ``previous`` keeps the old one) or rolled
  back (the ``candidate`` alias goes);
- rows already consumed that changed (:class:`~inhouse.errors.DataChangedError`, found when a
  retrain starts) stop the coordinator at once: no backoff and retry on data that broke the
  append-only contract.

The caller commits the returned state, events and alias moves in one transaction
(:meth:`~inhouse.coordinator.state.CoordinatorStore.commit`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from inhouse.canary import Canary
from inhouse.config import CoordinatorSettings
from inhouse.coordinator.canary import CanaryJudgement
from inhouse.coordinator.gate import GateResult
from inhouse.coordinator.state import CoordinatorState, Event
from inhouse.coordinator.triggers import Observation, fired
from inhouse.kinds.updating import RetrainJob

Action = Literal["wait", "retrain", "resume", "stop", "canary"]


@dataclass(frozen=True)
class Decision:
    """What to do now, and what to commit with it."""

    action: Action
    state: CoordinatorState
    reason: str = ""
    events: list[Event] = field(default_factory=list)
    aliases: dict[str, int | None] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """Whether there is anything to commit."""
        return bool(self.events or self.aliases) or self.action == "retrain"


def backoff_s(failures: int, *, base_s: float, max_s: float) -> float:
    """Wait after ``failures`` consecutive failures: base, 2 base, 4 base, ... capped."""
    if failures <= 0:
        return 0.0
    return float(min(max_s, base_s * 2.0 ** min(failures - 1, 60)))


def run_id(model: str, after_id: int, up_to_id: int) -> str:
    """The deterministic id of the retrain of one row window (lineage finds it on resume)."""
    return f"retrain-{model}-{after_id}-{up_to_id}"


class Policy:
    """Decides for one model under its :class:`CoordinatorSettings`."""

    def __init__(self, settings: CoordinatorSettings) -> None:
        self.settings = settings

    def decide(
        self, state: CoordinatorState, observation: Observation, *, manual_id: int = 0
    ) -> Decision:
        """The next action; ``manual_id`` is the newest manual-retrain request's event id."""
        if state.status != "running":
            return Decision("stop", state, "stopped")
        if state.job is not None:
            return Decision("resume", state, f"retrain {state.job['run_id']} is in flight")
        if state.canary is not None:
            return Decision("canary", state, f"canary of v{state.canary.version} is running")
        if observation.now < state.next_attempt_at:
            wait = state.next_attempt_at - observation.now
            reason = f"backing off {wait:.0f} s after {state.failures} failures"
            return Decision("wait", state, reason)
        manual = manual_id > state.manual_seen_id
        seen = state.replace(manual_seen_id=max(manual_id, state.manual_seen_id))
        observed = Observation(
            now=observation.now,
            max_row_id=observation.max_row_id,
            new_rows=observation.new_rows,
            drift=observation.drift,
            manual=manual,
        )
        reasons = fired(self.settings, observed, last_run_at=state.last_run_at or observation.now)
        if not reasons:
            if manual:  # consume the request so it does not fire on the next row
                event = Event("retrain_skipped", {"reason": "no new training rows"})
                return Decision("wait", seen, "manual request: nothing new", [event])
            return Decision("wait", state, f"{observation.new_rows} new rows, no trigger")
        job = RetrainJob(
            run_id=run_id(state.model, state.watermark, observation.max_row_id),
            after_id=state.watermark,
            up_to_id=observation.max_row_id,
            new_rows=observation.new_rows,
            reasons=reasons,
            started_at=observation.now,
            champion=state.champion_version,
        ).model_dump(mode="json")
        started = Event("retrain_started", dict(job))
        return Decision("retrain", seen.replace(job=job), ", ".join(reasons), [started])

    def completed(self, state: CoordinatorState, gate: GateResult, *, now: float) -> Decision:
        """A retrain finished and was gated: consume its window, promote if the gate says so."""
        job = self._job(state)
        candidate = gate.candidate_version
        done = state.replace(
            watermark=int(job["up_to_id"]),
            job=None,
            failures=0,
            next_attempt_at=0.0,
            last_run_at=now,
            candidate_version=candidate,
        )
        detail = {"run_id": job["run_id"], **gate.to_dict()}
        if gate.verdict != "promote":
            kind = "flagged" if gate.verdict == "review" else "rejected"
            return Decision("wait", done, "; ".join(gate.reasons), [Event(kind, detail)])
        share = self.settings.canary_share
        if share > 0 and gate.champion_version is not None:
            canary = Canary(
                version=candidate,
                champion_version=gate.champion_version,
                share=share,
                started_at=now,
                ends_at=now + self.settings.canary_window_s,
            )
            event = Event("canary_started", {**detail, "canary": canary.to_dict()})
            reason = f"v{candidate} passed the gate: canary on {share:.0%} of requests"
            return Decision(
                "wait", done.replace(canary=canary), reason, [event], {"candidate": candidate}
            )
        return self._promote(done, candidate, gate.champion_version, Event("promoted", detail))

    def _promote(
        self, state: CoordinatorState, candidate: int, champion: int | None, event: Event
    ) -> Decision:
        aliases: dict[str, int | None] = {"champion": candidate, "candidate": None}
        if champion is not None:
            aliases["previous"] = champion
        promoted = state.replace(champion_version=candidate, canary=None)
        return Decision("wait", promoted, f"v{candidate} promoted", [event], aliases)

    def canary_ended(self, state: CoordinatorState, judgement: CanaryJudgement) -> Decision:
        """A canary was judged ``promote`` or ``rollback``: move the aliases accordingly."""
        canary = state.canary
        if canary is None:
            raise ValueError(f"coordinator of {state.model!r} has no canary running")
        detail = {
            "candidate_version": canary.version,
            "champion_version": canary.champion_version,
            "reasons": judgement.reasons,
            "canary": judgement.figures,
        }
        if judgement.verdict == "promote":
            event = Event("promoted", {**detail, "via": "canary"})
            return self._promote(state, canary.version, canary.champion_version, event)
        reason = "; ".join(judgement.reasons)
        return Decision(
            "wait",
            state.replace(canary=None),
            f"canary of v{canary.version} rolled back: {reason}",
            [Event("canary_rolled_back", detail)],
            {"candidate": None},
        )

    def failed(self, state: CoordinatorState, error: str, *, now: float) -> Decision:
        """A retrain failed: keep the watermark, drop the job, back off."""
        job = self._job(state)
        failures = state.failures + 1
        wait = backoff_s(
            failures, base_s=self.settings.backoff_base_s, max_s=self.settings.backoff_max_s
        )
        event = Event(
            "retrain_failed",
            {
                "run_id": job["run_id"],
                "error": error[:2000],
                "failures": failures,
                "retry_in_s": wait,
            },
        )
        backing_off = state.replace(job=None, failures=failures, next_attempt_at=now + wait)
        if self.settings.dp and failures >= self.settings.max_dp_failures:
            # A DP retrain that dies mid-way stays charged: do not drain the budget.
            reason = f"{failures} DP retrains failed in a row; stopped (last: {error[:200]})"
            stop = Event("stopped", {"reason": reason})
            return Decision("wait", backing_off.replace(status="stopped"), reason, [event, stop])
        reason = f"failed ({error[:200]}); retry in {wait:.0f} s"
        return Decision("wait", backing_off, reason, [event])

    def data_changed(self, state: CoordinatorState, error: str) -> Decision:
        """Rows already consumed changed (the data set broke its append-only contract): drop
        the job, keep the watermark and stop; retrying cannot help until someone fixes the
        data, and ``coordinator start`` resumes after that."""
        job = self._job(state)
        reason = f"stopped: {error[:500]}"
        events = [
            Event("data_changed", {"run_id": job["run_id"], "error": error[:2000]}),
            Event("stopped", {"reason": reason}),
        ]
        return Decision("wait", state.replace(job=None, status="stopped"), reason, events)

    @staticmethod
    def _job(state: CoordinatorState) -> dict[str, Any]:
        if state.job is None:
            raise ValueError(f"coordinator of {state.model!r} has no retrain in flight")
        return state.job
