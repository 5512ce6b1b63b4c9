"""The coordinator actor keeps a text model fresh on the shared Ray cluster, over PostgreSQL:
texts INSERTed by another system -> a LoRA adapter retrain in the actor -> gate -> canary ->
promotion."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from inhouse import services
from inhouse.config import CoordinatorSettings, Settings, load_settings
from inhouse.coordinator import CoordinatorStore
from inhouse.coordinator.control import start
from tests.coordinator_setup import kill_coordinator
from tests.hf_tiny import CLASSES, make_rows
from tests.pg_schema import drop_schema
from tests.polling import wait_for
from tests.text_champion import DATASET, MODEL, make_text_champion

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PG_BASE = os.environ.get("INHOUSE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture()
def settings(ray_cluster: Settings, pg_url: str, tmp_path: Path) -> Iterator[Settings]:
    """A fresh PostgreSQL schema and home with an int8 tiny-BERT champion of ``intents``."""
    schema = f"ih_ct_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    home = tmp_path / "home"
    home.mkdir()
    url = f"{PG_BASE}?options=-csearch_path%3D{schema}"
    configured = load_settings(home=str(home), database_url=url)
    make_text_champion(configured, tmp_path)
    yield configured
    kill_coordinator(MODEL)
    drop_schema(admin, schema)


def _insert_sql(engine: Engine, count: int) -> int:
    """Texts written the way another system would: plain SQL INSERTs."""
    with engine.begin() as conn:
        for sentence, intent in make_rows(count, seed=31):
            conn.execute(
                text(f"INSERT INTO ds_{DATASET} (split, text, label) VALUES ('train', :t, :y)"),
                {"t": sentence, "y": CLASSES.index(intent)},
            )
        last: int = conn.execute(text(f"SELECT max(id) FROM ds_{DATASET}")).scalar_one()
    return last


def test_inserted_texts_become_a_promoted_lora_adapter(settings: Settings) -> None:
    from inhouse.actors.coordinator import start_actor

    engine, registry = services.engine(settings), services.registry(settings)
    champion = registry.resolve(MODEL, "champion")
    values = {
        "model": MODEL,
        "dataset": DATASET,
        "min_rows": 40,
        "epochs": 2,
        "batch_size": 8,
        "lr": 2e-3,
        "replay_ratio": 1.0,
        "poll_s": 0.25,
        "canary_window_s": 3,
    }
    start(registry, CoordinatorSettings(**values))
    start_actor(settings, MODEL)
    crossed = time.monotonic()
    last = _insert_sql(engine, 45)
    wait_for(
        lambda: registry.resolve(MODEL, "champion") != champion, timeout_s=120, what="a promotion"
    )
    new = registry.get(MODEL, "champion")
    assert new.spec["role"] == "adapter" and new.spec["method"] == "lora"
    assert new.lineage["rows"]["up_to_id"] == last
    state = CoordinatorStore(engine).load(MODEL)
    assert state.watermark == last and state.champion_version == new.version
    kinds = [e.kind for e in CoordinatorStore(engine).history(MODEL)]
    assert kinds[-3:] == ["retrain_started", "canary_started", "promoted"]
    print(f"text freshness (INSERT -> champion moved): {time.monotonic() - crossed:.1f} s")
