"""Coordinator state and history on SQLite and PostgreSQL: round trip, compare-and-set, alias
moves in the decision's transaction, rollback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inhouse.coordinator import CoordinatorState, CoordinatorStore, Event
from inhouse.coordinator.control import rollback
from inhouse.errors import ConflictError, NotFoundError
from inhouse.kinds import build_model, register_module
from inhouse.models import MLPSpec
from inhouse.registry import Registry
from inhouse.schema import get_engine

SPEC = MLPSpec(input_dim=4, hidden=[8], num_classes=3).model_dump()


def _registry(db_url: str, tmp_path: Path, versions: int) -> Registry:
    registry = Registry(engine=get_engine(db_url), root=tmp_path / "registry")
    torch.manual_seed(0)
    for _ in range(versions):
        register_module(
            registry, "digits", module=build_model(SPEC), spec=SPEC, metrics={}, lineage={}
        )
    return registry


def _state() -> CoordinatorState:
    return CoordinatorState(
        model="digits",
        dataset="digits",
        settings={"model": "digits", "min_rows": 5},
        watermark=1797,
        champion_version=1,
    )


def test_state_round_trip_and_compare_and_set(db_url: str, tmp_path: Path) -> None:
    registry = _registry(db_url, tmp_path, versions=2)
    store = CoordinatorStore(registry.engine)
    assert store.get("digits") is None
    with pytest.raises(NotFoundError, match="coordinator start digits"):
        store.load("digits")
    store.create(_state(), events=[Event("started", {"watermark": 1797})])
    loaded = store.load("digits")
    assert loaded == _state()
    job = {"run_id": "retrain-digits-1797-1900", "after_id": 1797, "up_to_id": 1900}
    committed = store.commit(loaded.replace(job=job), events=[Event("retrain_started", job)])
    assert committed.revision == 1 and store.load("digits") == committed
    with pytest.raises(ConflictError, match="changed since revision 0"):
        store.commit(loaded.replace(watermark=5))  # a stale writer loses
    done = committed.replace(job=None, watermark=1900, champion_version=2)
    store.commit(done, events=[Event("promoted", {"x": 1})], aliases={"champion": 2})
    assert store.load("digits").watermark == 1900 and store.load("digits").job is None
    assert registry.aliases("digits") == {"champion": 2}
    assert [e.kind for e in store.history("digits")] == ["started", "retrain_started", "promoted"]
    assert store.history("digits", kind="promoted")[0].detail == {"x": 1}
    assert store.latest_event_id("digits", "promoted") > store.latest_event_id("digits", "started")


def test_a_failed_alias_move_rolls_the_whole_decision_back(db_url: str, tmp_path: Path) -> None:
    registry = _registry(db_url, tmp_path, versions=1)
    store = CoordinatorStore(registry.engine)
    store.create(_state())
    with pytest.raises(NotFoundError, match="no version 9"):
        store.commit(_state().replace(watermark=2000), aliases={"champion": 9})
    assert store.load("digits") == _state()  # watermark not advanced, revision unchanged
    assert store.history("digits") == []


def test_rollback_walks_back_through_promotions(db_url: str, tmp_path: Path) -> None:
    registry = _registry(db_url, tmp_path, versions=3)
    store = CoordinatorStore(registry.engine)
    state = store.create(_state())
    registry.set_alias("digits", "champion", 1)
    for old, new in ((1, 2), (2, 3)):
        detail = {"candidate_version": new, "champion_version": old}
        state = store.commit(
            state.replace(champion_version=new),
            events=[Event("promoted", detail)],
            aliases={"champion": new, "previous": old},
        )
    assert rollback(registry.engine, "digits") == (3, 2)
    assert registry.aliases("digits") == {"champion": 2, "previous": 1}
    assert rollback(registry.engine, "digits") == (2, 1)
    assert registry.aliases("digits") == {"champion": 1}
    with pytest.raises(ConflictError, match="no previous champion"):
        rollback(registry.engine, "digits")
    assert [e.detail["to"] for e in store.history("digits", kind="rollback")] == [2, 1]
