"""Ray Train DDP on the shared cluster, reading from PostgreSQL; resume after a worker dies."""

from __future__ import annotations

from pathlib import Path

import pytest

from inhouse.config import Settings, load_settings
from inhouse.data import seed
from inhouse.db import get_engine
from inhouse.registry import Registry
from jobs import train

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _settings(base: Settings, db_url: str, **train_cfg: object) -> Settings:
    return load_settings(home=str(base.home), database_url=db_url,
                         train={"model": "digits_pg", **train_cfg})


def test_ddp_training_from_postgres_reaches_target_and_registers(
    ray_cluster: Settings, pg_url: str
) -> None:
    settings = _settings(ray_cluster, pg_url)
    seed(get_engine(pg_url), "digits")
    summary = train.run(settings)
    assert summary["test_accuracy"] >= 0.95
    registry = Registry(engine=get_engine(pg_url), root=settings.registry_dir)
    info = registry.get("digits_pg")  # the champion
    assert info.version == summary["version"]
    assert info.lineage["rows"]["train_rows"] == 1437 and info.lineage["dataset"] == "digits"
    assert info.metrics["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    events = list(Path(summary["run_dir"], "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 1000  # scalars and histograms


def test_a_killed_worker_resumes_from_its_last_checkpoint(
    ray_cluster: Settings, pg_url: str
) -> None:
    settings = _settings(ray_cluster, pg_url, epochs=4, promote=False)
    seed(get_engine(pg_url), "digits")
    summary = train.run(settings, crash_at_epoch=2)
    marker = Path(summary["run_dir"], "crash-marker")
    assert marker.exists()  # a worker process really died
    registry = Registry(engine=get_engine(pg_url), root=settings.registry_dir)
    info = registry.get("digits_pg", str(summary["version"]))
    # Not from scratch: from the last checkpoint Ray had committed when the worker died
    # (the report of the epoch just before the crash may still have been in flight).
    assert 1 <= info.metrics["resumed_from_epoch"] <= 2
    assert summary["test_accuracy"] >= 0.93
