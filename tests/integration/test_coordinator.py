"""The coordinator actor on the shared Ray cluster, over PostgreSQL: stream rows -> retrain ->
gate -> promotion; a worse candidate rejected; a killed actor resumes exactly."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from inhouse import services
from inhouse.config import CoordinatorSettings, Settings, load_settings
from inhouse.coordinator import CoordinatorStore
from inhouse.coordinator.control import start
from inhouse.data import read_rows
from inhouse.schema import get_engine
from tests.coordinator_setup import append_stream, kill_coordinator, make_champion
from tests.digits_parent import Parent, train_parent
from tests.pg_schema import drop_schema
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "digits"
PG_BASE = os.environ.get("INHOUSE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _drop(admin: Engine, schema: str) -> None:
    drop_schema(admin, schema)


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Parent:
    from inhouse.data import seed

    engine = get_engine(f"sqlite:///{tmp_path_factory.mktemp('parent') / 'data.db'}")
    seed(engine, "digits")
    return train_parent(engine)


@pytest.fixture()
def settings(
    ray_cluster: Settings, pg_url: str, tmp_path: Path, parent: Parent
) -> Iterator[Settings]:
    """A fresh PostgreSQL schema and home with a compressed champion of ``digits``."""
    schema = f"ih_c_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_BASE}?options=-csearch_path%3D{schema}"
    home = tmp_path / "home"
    home.mkdir()
    configured = load_settings(home=str(home), database_url=url)
    make_champion(configured, parent=parent)
    yield configured
    _drop(admin, schema)


def _start(settings: Settings, **kw: Any) -> Any:
    from inhouse.actors.coordinator import start_actor

    values = {"model": MODEL, "min_rows": 100, "epochs": 3, "poll_s": 0.25, **kw}
    start(services.registry(settings), CoordinatorSettings(**values))
    return start_actor(settings, MODEL)


@pytest.fixture()
def stop_actor() -> Iterator[None]:
    yield
    kill_coordinator(MODEL)


def _insert_sql(engine: Engine, count: int) -> int:
    """Rows written the way another system would: a plain SQL INSERT."""
    train = read_rows(engine, "digits", split="train", up_to_id=200)
    with engine.begin() as conn:
        for i in range(count):
            conn.execute(
                text(
                    "INSERT INTO ds_digits (split, features, label) "
                    "VALUES ('train', CAST(:features AS JSON), :label)"
                ),
                {"features": json.dumps(train.x[i].tolist()), "label": int(train.y[i])},
            )
        last: int = conn.execute(text("SELECT max(id) FROM ds_digits")).scalar_one()
    return last


def _windows(settings: Settings) -> list[tuple[int, int]]:
    versions = services.registry(settings).versions(MODEL)
    floats = [v for v in versions if v.lineage.get("coordinator_run") and v.format != "compressed"]
    return [(v.lineage["rows"]["first_id"], v.lineage["rows"]["up_to_id"]) for v in floats]


def test_rows_from_sql_inserts_are_retrained_and_promoted(
    settings: Settings, stop_actor: None
) -> None:
    import ray

    engine, registry = services.engine(settings), services.registry(settings)
    champion = registry.resolve(MODEL, "champion")
    actor = _start(settings, canary_window_s=5)
    assert ray.get(actor.info.remote())["running"]
    append_stream(engine, 60)  # below the trigger: nothing happens
    crossed = time.monotonic()
    last = _insert_sql(engine, 60)  # this INSERT crosses min_rows=100
    wait_for(
        lambda: registry.resolve(MODEL, "champion") != champion, timeout_s=90, what="a promotion"
    )
    freshness_s = time.monotonic() - crossed
    new = registry.get(MODEL, "champion")
    assert new.format == "compressed" and registry.aliases(MODEL)["previous"] == champion
    assert _windows(settings) == [(1798, last)]
    state = CoordinatorStore(engine).load(MODEL)
    assert state.watermark == last and state.champion_version == new.version
    assert freshness_s < 60, f"freshness {freshness_s:.1f} s"
    kinds = [e.kind for e in CoordinatorStore(engine).history(MODEL)]
    assert kinds[-3:] == ["retrain_started", "canary_started", "promoted"]  # 5 s canary
    print(f"freshness (INSERT -> champion moved): {freshness_s:.1f} s")


def test_a_worse_candidate_is_rejected(settings: Settings, stop_actor: None) -> None:
    engine, registry = services.engine(settings), services.registry(settings)
    champion = registry.resolve(MODEL, "champion")
    store = CoordinatorStore(engine)
    _start(settings, replay_ratio=0.0, epochs=8, lr=3e-3, batch_size=16)
    last = append_stream(engine, 200, shuffle=True)
    wait_for(lambda: store.load(MODEL).watermark == last, timeout_s=90, what="the retrain")
    rejected = store.history(MODEL, kind="rejected")
    assert len(rejected) == 1, [e.kind for e in store.history(MODEL)]
    assert "points below" in rejected[0].detail["reasons"][0]
    assert registry.resolve(MODEL, "champion") == champion  # still serving the old one


@pytest.mark.reliability  # a fault test (make test-reliability): 40 s of make test's budget
def test_a_killed_actor_resumes_without_skipping_or_repeating_rows(
    settings: Settings, stop_actor: None
) -> None:
    import ray

    engine = services.engine(settings)
    store = CoordinatorStore(engine)
    actor = _start(settings)
    pid = ray.get(actor.info.remote())["pid"]
    first = append_stream(engine, 150, seed_=2)
    wait_for(lambda: store.load(MODEL).job is not None, timeout_s=60, what="a retrain to start")
    ray.kill(actor, no_restart=False)  # mid-retrain; Ray restarts it (max_restarts=-1)
    wait_for(lambda: store.load(MODEL).watermark == first, timeout_s=120, what="the resume")
    assert ray.get(actor.info.remote(), timeout=60)["pid"] != pid  # really a new process
    second = append_stream(engine, 150, seed_=3)
    wait_for(lambda: store.load(MODEL).watermark == second, timeout_s=90, what="the next one")
    # One float candidate per window; the windows tile the stream: no row skipped or repeated.
    assert _windows(settings) == [(1798, first), (first + 1, second)]
    runs = [v.lineage.get("coordinator_run") for v in services.registry(settings).versions(MODEL)]
    assert len([r for r in runs if r]) == 4  # a float and a compressed version per window
