"""Canary promotion without Ray: the judgement, the decisions, the durable canary row and the
traffic the ingress flushes, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import torch

from inhouse.canary import (
    Canary,
    Traffic,
    TrafficCounter,
    active_canaries,
    read_traffic,
    write_traffic,
)
from inhouse.config import CoordinatorSettings
from inhouse.coordinator import CoordinatorState, CoordinatorStore, Observation, Policy
from inhouse.coordinator.canary import CanaryJudgement, Feedback, judge_canary
from inhouse.coordinator.control import abort_canary, status
from inhouse.coordinator.gate import GateResult
from inhouse.kinds import build_model, register_module
from inhouse.models import MLPSpec
from inhouse.registry import Registry
from inhouse.schema import get_engine

SETTINGS = CoordinatorSettings(model="digits", canary_share=0.2, canary_window_s=60)
CANARY = Canary(version=4, champion_version=2, share=0.2, started_at=1000.0, ends_at=1060.0)
SPEC = MLPSpec(input_dim=4, hidden=[8], num_classes=3).model_dump()


def _traffic(requests: int, errors: int = 0, latency_ms: float = 3.0) -> Traffic:
    traffic = Traffic()
    for i in range(requests):
        traffic.add(latency_ms, error=i < errors)
    return traffic


def _judge(
    candidate: Traffic, champion: Traffic, now: float, feedback: Feedback | None = None
) -> CanaryJudgement:
    return judge_canary(
        CANARY,
        candidate=candidate,
        champion=champion,
        feedback=feedback,
        settings=SETTINGS,
        now=now,
    )


def test_traffic_quantiles_and_merging() -> None:
    traffic = _traffic(95, latency_ms=3.0)
    traffic.merge(_traffic(5, errors=5, latency_ms=150.0))
    assert traffic.requests == 100 and traffic.errors == 5 and traffic.error_rate == 0.05
    assert traffic.quantile_ms(0.5) == 5.0  # the upper edge of the 2-5 ms bucket
    assert traffic.quantile_ms(0.95) == 5.0 and traffic.quantile_ms(0.99) == 200.0
    assert Traffic().quantile_ms(0.95) == 0.0 and Traffic().summary()["requests"] == 0


def test_the_canary_is_watched_until_its_window_ends() -> None:
    judged = _judge(_traffic(30), _traffic(300), now=1030.0)
    assert judged.verdict == "watch"


def test_an_erroring_canary_is_rolled_back_before_its_window_ends() -> None:
    judged = _judge(_traffic(30, errors=3), _traffic(300), now=1010.0)
    assert judged.verdict == "rollback" and "error rate 10.00%" in judged.reasons[0]
    too_few = _judge(_traffic(10, errors=3), _traffic(300), now=1010.0)
    assert too_few.verdict == "watch"  # 10 < canary_min_requests: not evidence yet


def test_a_slow_or_less_accurate_canary_is_rolled_back_at_the_end() -> None:
    slow = _judge(_traffic(30, latency_ms=40.0), _traffic(300, latency_ms=3.0), now=1061.0)
    assert slow.verdict == "rollback" and "p95 latency is 10.00x" in slow.reasons[0]
    worse = _judge(_traffic(30), _traffic(300), now=1061.0, feedback=Feedback(50, 0.80, 0.90))
    assert worse.verdict == "rollback" and "10.00 points below" in worse.reasons[0]


def test_a_healthy_canary_is_promoted_also_without_traffic() -> None:
    judged = _judge(_traffic(30), _traffic(300), now=1061.0, feedback=Feedback(50, 0.9, 0.91))
    assert judged.verdict == "promote" and judged.figures["candidate"]["requests"] == 30
    quiet = _judge(Traffic(), Traffic(), now=1061.0)
    assert quiet.verdict == "promote" and "latency not compared" in quiet.reasons[-1]


def _state(**kw: object) -> CoordinatorState:
    values: dict[str, object] = {
        "model": "digits",
        "dataset": "digits",
        "settings": {},
        "watermark": 1797,
        "champion_version": 2,
        "job": {"run_id": "r", "after_id": 1797, "up_to_id": 1900},
    }
    values.update(kw)
    return CoordinatorState(**values)  # type: ignore[arg-type]


def test_a_passing_candidate_becomes_a_canary_then_champion_or_nothing() -> None:
    policy = Policy(SETTINGS)
    gate = GateResult("promote", ["ok"], candidate_version=4, champion_version=2, figures={})
    started = policy.completed(_state(), gate, now=1000.0)
    assert started.aliases == {"candidate": 4} and started.state.champion_version == 2
    assert started.state.canary == CANARY and started.state.watermark == 1900
    assert [e.kind for e in started.events] == ["canary_started"]
    assert policy.decide(started.state, _obs()).action == "canary"  # no retrain meanwhile
    promote = policy.canary_ended(started.state, _judge(_traffic(30), _traffic(30), 1061.0))
    assert promote.aliases == {"champion": 4, "previous": 2, "candidate": None}
    assert promote.state.canary is None and promote.state.champion_version == 4
    assert promote.events[0].kind == "promoted" and promote.events[0].detail["via"] == "canary"
    failing = _judge(_traffic(30, errors=30), _traffic(30), 1010.0)
    back = policy.canary_ended(started.state, failing)
    assert back.aliases == {"candidate": None} and back.state.champion_version == 2
    assert back.state.canary is None and back.events[0].kind == "canary_rolled_back"


def _obs() -> Observation:
    return Observation(now=1001.0, max_row_id=5000, new_rows=3000)


def test_the_canary_row_and_alias_commit_with_the_decision(db_url: str, tmp_path: Path) -> None:
    engine = get_engine(db_url)
    registry = Registry(engine=engine, root=tmp_path / "registry")
    torch.manual_seed(0)
    for _ in range(4):
        register_module(
            registry, "digits", module=build_model(SPEC), spec=SPEC, metrics={}, lineage={}
        )
    registry.set_alias("digits", "champion", 2)
    store = CoordinatorStore(engine)
    state = store.create(_state(job=None))
    with_canary = store.commit(state.replace(canary=CANARY), aliases={"candidate": 4})
    assert store.load("digits").canary == CANARY
    assert active_canaries(engine, ["digits", "other"]) == {"digits": CANARY}
    assert registry.aliases("digits") == {"champion": 2, "candidate": 4}
    assert status(engine, "digits")["canary"]["version"] == 4
    assert abort_canary(engine, "digits") == 4  # `inhouse rollback` during a canary
    assert store.load("digits").canary is None and active_canaries(engine, ["digits"]) == {}
    assert registry.aliases("digits") == {"champion": 2}
    assert abort_canary(engine, "digits") is None
    assert with_canary.revision == 1 and store.history("digits")[-1].kind == "canary_aborted"


def test_traffic_flushed_by_ingress_replicas_adds_up(db_url: str) -> None:
    engine = get_engine(db_url)
    counters = [TrafficCounter(), TrafficCounter()]  # two ingress replicas
    for i, counter in enumerate(counters):
        for _ in range(10):
            counter.add("digits", 4, 3.0, error=i == 1)
        counter.add("digits", 2, 1.5, error=False)
        write_traffic(engine, counter.drain())
        assert counter.drain() == {}
    canary = read_traffic(engine, "digits", 4, since=0.0)
    assert (canary.requests, canary.errors) == (20, 10)
    assert read_traffic(engine, "digits", 2, since=0.0).requests == 2
    assert read_traffic(engine, "digits", 4, since=4e9).requests == 0  # before the canary
