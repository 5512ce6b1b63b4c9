"""A training worker killed mid-run: the run resumes from its last checkpoint and finishes
with the expected accuracy (``make test-reliability``; the figures are printed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from inhouse import services
from inhouse.config import Settings, load_settings
from inhouse.data import seed
from inhouse.jobs import train

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def test_a_worker_killed_mid_epoch_resumes_and_reaches_the_accuracy(
    ray_cluster: Settings,
) -> None:
    settings = load_settings(
        home=str(ray_cluster.home),
        train={"model": "digits_crash", "epochs": 4, "promote": False, "compress": False},
    )
    seed(services.engine(settings), "digits")
    started = time.perf_counter()
    summary = train.run(settings, settings.train, crash_at_epoch=2)
    seconds = time.perf_counter() - started
    assert Path(summary["run_dir"], "crash-marker").exists()  # a worker process really died
    info = services.registry(settings).get("digits_crash", str(summary["version"]))
    figures = {
        "seconds": round(seconds, 1),
        "train_seconds": summary["train_seconds"],
        "resumed_from_epoch": info.metrics["resumed_from_epoch"],
        "test_accuracy": round(summary["test_accuracy"], 4),
    }
    print("\nRELIABILITY training worker kill:", json.dumps(figures))
    assert info.metrics["resumed_from_epoch"] == 2  # from the last checkpoint, not from scratch
    assert summary["test_accuracy"] >= 0.93
