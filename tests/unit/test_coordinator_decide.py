"""The decision class: one retrain at a time, backoff, watermark advance on completion only."""

from __future__ import annotations

import pytest

from inhouse.config import CoordinatorSettings
from inhouse.coordinator import CoordinatorState, GateResult, Observation, Policy, backoff_s

SETTINGS = CoordinatorSettings(model="digits", min_rows=100, backoff_base_s=10, backoff_max_s=60)
POLICY = Policy(SETTINGS)


def _state(**kw: object) -> CoordinatorState:
    values: dict[str, object] = {
        "model": "digits",
        "dataset": "digits",
        "settings": {},
        "watermark": 1797,
        "champion_version": 2,
        "last_run_at": 0.0,
    }
    values.update(kw)
    return CoordinatorState(**values)  # type: ignore[arg-type]


def _obs(new_rows: int = 150, max_row_id: int = 1997, now: float = 1000.0) -> Observation:
    return Observation(now=now, max_row_id=max_row_id, new_rows=new_rows)


def _gate(verdict: str, candidate: int = 4) -> GateResult:
    return GateResult(
        verdict=verdict,  # type: ignore[arg-type]
        reasons=["x"],
        candidate_version=candidate,
        champion_version=2,
        figures={},
    )


def test_a_trigger_starts_a_retrain_of_exactly_the_window_above_the_watermark() -> None:
    decision = POLICY.decide(_state(), _obs())
    assert decision.action == "retrain" and decision.reason == "rows>=100"
    job = decision.state.job
    assert job is not None
    assert (job["after_id"], job["up_to_id"]) == (1797, 1997)
    assert job["run_id"] == "retrain-digits-1797-1997"
    assert decision.state.watermark == 1797  # not consumed yet
    assert [e.kind for e in decision.events] == ["retrain_started"]


def test_no_trigger_no_retrain() -> None:
    decision = POLICY.decide(_state(), _obs(new_rows=99))
    assert decision.action == "wait" and not decision.changed


def test_never_two_retrains_at_once() -> None:
    running = POLICY.decide(_state(), _obs()).state
    again = POLICY.decide(running, _obs(new_rows=5000, max_row_id=9000))
    assert again.action == "resume" and again.state.job == running.job  # same window, no new job
    assert "in flight" in again.reason


def test_completion_advances_the_watermark_and_promotes_with_a_previous_alias() -> None:
    direct = Policy(SETTINGS.model_copy(update={"canary_share": 0.0}))
    running = direct.decide(_state(), _obs()).state
    done = direct.completed(running, _gate("promote"), now=2000.0)
    assert done.state.watermark == 1997 and done.state.job is None
    assert done.state.champion_version == 4 and done.state.last_run_at == 2000.0
    assert done.aliases == {"champion": 4, "previous": 2, "candidate": None}
    assert [e.kind for e in done.events] == ["promoted"]


@pytest.mark.parametrize(("verdict", "kind"), [("reject", "rejected"), ("review", "flagged")])
def test_a_gated_out_candidate_consumes_its_rows_but_moves_no_alias(
    verdict: str, kind: str
) -> None:
    running = POLICY.decide(_state(), _obs()).state
    done = POLICY.completed(running, _gate(verdict), now=2000.0)
    assert done.state.watermark == 1997 and done.state.champion_version == 2
    assert done.aliases == {} and [e.kind for e in done.events] == [kind]
    assert done.state.candidate_version == 4


def test_a_failure_keeps_the_watermark_and_backs_off_exponentially_with_a_cap() -> None:
    state = _state()
    waits = []
    for attempt in range(1, 6):
        running = POLICY.decide(state, _obs(now=1e6 * attempt)).state
        assert running.job is not None
        failed = POLICY.failed(running, "boom", now=1e6 * attempt)
        state = failed.state
        assert state.watermark == 1797 and state.job is None and state.failures == attempt
        waits.append(state.next_attempt_at - 1e6 * attempt)
        assert POLICY.decide(state, _obs(now=state.next_attempt_at - 1)).action == "wait"
    assert waits == [10, 20, 40, 60, 60]
    recovered = POLICY.completed(
        POLICY.decide(state, _obs(now=state.next_attempt_at)).state, _gate("promote"), now=9e6
    )
    assert recovered.state.failures == 0 and recovered.state.next_attempt_at == 0.0


def test_backoff_formula() -> None:
    assert [backoff_s(n, base_s=1, max_s=5) for n in range(5)] == [0, 1, 2, 4, 5]


def test_a_manual_request_fires_once() -> None:
    decision = POLICY.decide(_state(), _obs(new_rows=3), manual_id=7)
    assert decision.action == "retrain" and decision.reason == "manual"
    assert decision.state.manual_seen_id == 7
    done = POLICY.completed(decision.state, _gate("reject"), now=5.0).state
    assert POLICY.decide(done, _obs(new_rows=3, max_row_id=2100), manual_id=7).action == "wait"


def test_a_manual_request_with_nothing_new_is_consumed_and_recorded() -> None:
    decision = POLICY.decide(_state(), _obs(new_rows=0), manual_id=3)
    assert decision.action == "wait" and decision.state.manual_seen_id == 3
    assert [e.kind for e in decision.events] == ["retrain_skipped"]


def test_a_stopped_coordinator_stops() -> None:
    assert POLICY.decide(_state(status="stopped"), _obs()).action == "stop"


def test_completing_without_a_job_is_an_error() -> None:
    with pytest.raises(ValueError, match="no retrain in flight"):
        POLICY.completed(_state(), _gate("promote"), now=1.0)


def test_repeated_dp_failures_stop_the_coordinator_instead_of_draining_the_budget() -> None:
    policy = Policy(SETTINGS.model_copy(update={"dp": True, "max_dp_failures": 2}))
    state = _state()
    for attempt in (1, 2):
        running = policy.decide(state, _obs(now=1e6 * attempt)).state
        decision = policy.failed(running, "worker died", now=1e6 * attempt)
        state = decision.state
    assert state.status == "stopped" and "2 DP retrains failed in a row" in decision.reason
    assert [e.kind for e in decision.events] == ["retrain_failed", "stopped"]
    assert policy.decide(state, _obs(now=1e7)).action == "stop"


def test_changed_consumed_rows_stop_the_coordinator_keeping_the_watermark() -> None:
    running = POLICY.decide(_state(), _obs()).state
    stopped = POLICY.data_changed(running, "data set 'digits' changed in consumed rows seq 1..9")
    assert stopped.state.status == "stopped" and stopped.state.job is None
    assert stopped.state.watermark == 1797 and stopped.state.failures == 0
    assert [e.kind for e in stopped.events] == ["data_changed", "stopped"]
    assert "changed in consumed rows" in stopped.reason
    assert POLICY.decide(stopped.state, _obs()).action == "stop"
    with pytest.raises(ValueError, match="no retrain in flight"):
        POLICY.data_changed(_state(), "x")
