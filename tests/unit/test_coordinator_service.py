"""One coordinator step without Ray, with the real incremental retrain: promote, resume a
crashed retrain without training its rows twice, back off after a failure, CLI rollback."""

from __future__ import annotations

import argparse
import functools
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from inhouse import services
from inhouse.canary import Traffic, write_traffic
from inhouse.cli.coordinator_cmd import add_parser as add_coordinator_commands
from inhouse.config import CoordinatorSettings, Settings, load_settings
from inhouse.coordinator import CoordinatorStore
from inhouse.coordinator.control import request_retrain, start
from inhouse.coordinator.retrain import run_retrain
from inhouse.coordinator.service import Coordinator
from inhouse.kinds.tabular.retrain import train_candidate
from inhouse.kinds.updating import Measured, RetrainJob, RetrainRun
from tests.coordinator_setup import append_stream, make_champion

MODEL = "digits"


@pytest.fixture(scope="module")
def base_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("base-home")
    make_champion(load_settings(home=str(home)))
    return home


@pytest.fixture()
def settings(base_home: Path, tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    shutil.copytree(base_home, home)
    return load_settings(home=str(home))


def _coordinator(settings: Settings, **kw: Any) -> Coordinator:
    retrain = kw.pop("retrain", None) or functools.partial(run_retrain, settings)
    clock = kw.pop("clock", time.time)
    cs = CoordinatorSettings(
        **{"model": MODEL, "min_rows": 100, "epochs": 3, "canary_share": 0.0, **kw}
    )
    start(services.registry(settings), cs)
    return Coordinator(
        engine=services.engine(settings),
        registry=services.registry(settings),
        settings=cs,
        retrain=retrain,
        clock=clock,
    )


def test_new_rows_are_retrained_gated_and_promoted(settings: Settings) -> None:
    coordinator = _coordinator(settings)
    registry = coordinator.registry
    champion = registry.resolve(MODEL, "champion")
    assert coordinator.step().action == "wait"  # nothing new yet
    last = append_stream(coordinator.engine, 150)
    report = coordinator.step()
    assert report.action == "promote", report.reason
    assert report.measured is not None and report.measured.importance_spearman is not None
    assert report.measured.importance_spearman > 0.8  # same rows, same coalitions: consistent
    state = coordinator.store.load(MODEL)
    assert state.watermark == last and state.job is None
    aliases = registry.aliases(MODEL)
    assert aliases == {"champion": state.champion_version, "previous": champion}
    served = registry.get(MODEL, "champion")
    assert served.format == "compressed"  # compressed like the champion was
    float_parent = registry.get(MODEL, str(served.lineage["parent"]["version"]))
    rows = float_parent.lineage["rows"]
    assert (rows["first_id"], rows["up_to_id"], rows["new_train_rows"]) == (1798, last, 150)
    assert rows["replay_rows"] == 600 and rows["replay_up_to_id"] == 1797
    assert float_parent.lineage["warm_start"]["from_version"] == 1
    assert served.metrics["test_accuracy"] >= 0.95
    kinds = [e.kind for e in coordinator.store.history(MODEL)]
    assert kinds == ["started", "retrain_started", "promoted"]


def test_a_crashed_retrain_resumes_without_training_its_rows_twice(settings: Settings) -> None:
    coordinator = _coordinator(settings)
    append_stream(coordinator.engine, 120)
    state = coordinator.store.load(MODEL)
    decision = coordinator.policy.decide(state, coordinator.observe(state))
    assert decision.action == "retrain"
    state = coordinator.store.commit(decision.state, events=decision.events)
    assert state.job is not None
    # The actor registered the float candidate, then died before compressing or committing.
    job = RetrainJob.model_validate(state.job)
    train_candidate(
        RetrainRun(
            registry=coordinator.registry,
            engine=coordinator.engine,
            settings=coordinator.settings,
            job=job,
        )
    )
    report = coordinator.step()  # a fresh actor resumes the job in flight
    assert report.action == "promote"
    run = state.job["run_id"]
    made = [
        v for v in coordinator.registry.versions(MODEL) if v.lineage.get("coordinator_run") == run
    ]
    assert sorted(v.format for v in made) == ["compressed", "safetensors"]  # one of each
    assert coordinator.store.load(MODEL).watermark == state.job["up_to_id"]


def test_a_failed_retrain_keeps_the_watermark_and_backs_off(settings: Settings) -> None:
    calls: list[RetrainJob] = []

    def broken(_cs: CoordinatorSettings, job: RetrainJob) -> Measured:
        calls.append(job)
        raise RuntimeError("disk full")

    coordinator = _coordinator(settings, retrain=broken, backoff_base_s=3600)
    append_stream(coordinator.engine, 100)
    report = coordinator.step()
    assert report.action == "failed" and "disk full" in report.reason
    state = coordinator.store.load(MODEL)
    assert state.watermark == 1797 and state.failures == 1 and state.job is None
    assert coordinator.step().action == "wait" and len(calls) == 1  # backing off
    assert [e.kind for e in coordinator.store.history(MODEL)][-1] == "retrain_failed"


def _cli(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_coordinator_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    code: int = args.handler(settings, args)
    return code


def test_a_change_to_consumed_rows_stops_the_coordinator(settings: Settings) -> None:
    coordinator = _coordinator(settings)
    last = append_stream(coordinator.engine, 150)
    assert coordinator.step().action == "promote"
    with coordinator.engine.begin() as conn:  # breaks the contract: a consumed row changes
        conn.execute(text("UPDATE ds_digits SET label = (label + 1) % 10 WHERE seq = :s"), {"s": 7})
    append_stream(coordinator.engine, 150, seed_=2)
    report = coordinator.step()
    assert report.action == "stopped", report.reason
    assert f"'digits' changed in consumed rows seq 1..{last}:" in report.reason
    state = coordinator.store.load(MODEL)
    assert (state.status, state.watermark, state.job) == ("stopped", last, None)
    assert "data_changed" in [e.kind for e in coordinator.store.history(MODEL, limit=5)]
    assert coordinator.step().action == "stop"


def test_manual_retrain_and_rollback_through_the_cli(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    coordinator = _coordinator(settings, min_rows=10_000)
    append_stream(coordinator.engine, 40)
    assert coordinator.step().action == "wait"  # below the row trigger
    assert _cli(settings, "retrain", MODEL) == 0
    assert request_retrain(coordinator.engine, MODEL) > 0  # a second request is one retrain
    report = coordinator.step()
    assert report.action == "promote" and report.reason.startswith("v")
    promoted = coordinator.registry.resolve(MODEL, "champion")
    assert _cli(settings, "rollback", MODEL) == 0
    assert f"from v{promoted} to v2" in capsys.readouterr().out
    assert coordinator.registry.resolve(MODEL, "champion") == 2
    coordinator.step()  # the coordinator follows the rolled-back champion
    assert CoordinatorStore(coordinator.engine).load(MODEL).champion_version == 2


def _served(engine: Any, version: int, requests: int, errors: int = 0) -> None:
    """What the ingress would flush after ``requests`` answered by ``version``."""
    traffic = Traffic()
    for i in range(requests):
        traffic.add(4.0, error=i < errors)
    write_traffic(engine, {(MODEL, version): traffic})


def test_a_candidate_serves_as_a_canary_then_is_rolled_back_or_promoted(
    settings: Settings,
) -> None:
    now = [time.time()]
    coordinator = _coordinator(settings, canary_share=0.5, canary_window_s=30, clock=lambda: now[0])
    registry, engine = coordinator.registry, coordinator.engine
    champion = registry.resolve(MODEL, "champion")
    append_stream(engine, 150)
    report = coordinator.step()
    assert report.action == "canary_started", report.reason
    canary = coordinator.store.load(MODEL).canary
    assert canary is not None and canary.champion_version == champion
    assert registry.aliases(MODEL) == {"champion": champion, "candidate": canary.version}
    _served(engine, canary.version, 30, errors=5)  # the canary fails 1 request in 6
    report = coordinator.step()
    assert report.action == "rolled_back" and "error rate 16.67%" in report.reason
    assert registry.aliases(MODEL) == {"champion": champion}  # it never left
    append_stream(engine, 150, seed_=2)
    assert coordinator.step().action == "canary_started"
    second = coordinator.store.load(MODEL).canary
    assert second is not None and second.version != canary.version
    _served(engine, second.version, 30)
    _served(engine, champion, 300)
    assert coordinator.step().action == "canary"  # still inside its window
    append_stream(engine, 60, seed_=3)  # labelled rows neither version trained on
    now[0] += 31
    report = coordinator.step()
    assert report.action == "promoted", report.reason
    assert report.figures["feedback"]["rows"] == 60
    assert report.figures["candidate"]["requests"] == 30
    aliases = registry.aliases(MODEL)
    assert aliases == {"champion": second.version, "previous": champion}
    kinds = [e.kind for e in coordinator.store.history(MODEL)]
    assert kinds[-3:] == ["retrain_started", "canary_started", "promoted"]
    assert "canary_rolled_back" in kinds
