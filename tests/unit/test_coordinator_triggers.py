"""Retraining triggers: new-row count, interval and cron schedules, PSI/KS drift, manual."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from inhouse.config import CoordinatorSettings
from inhouse.coordinator import Drift, Observation, drift, fired, ks, psi
from inhouse.coordinator.triggers import rows_due, schedule_due
from inhouse.errors import ConfigError

HOUR = 3600.0


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def test_row_count_fires_at_the_threshold_only() -> None:
    assert not rows_due(199, 200)
    assert rows_due(200, 200)
    assert not rows_due(10_000, None)  # off


def test_interval_schedule() -> None:
    assert not schedule_due(now=100.0 + HOUR - 1, last_run_at=100.0, interval_s=HOUR, cron=None)
    assert schedule_due(now=100.0 + HOUR, last_run_at=100.0, interval_s=HOUR, cron=None)
    assert not schedule_due(now=1e12, last_run_at=0.0, interval_s=None, cron=None)


def test_cron_schedule_fires_once_its_next_time_has_passed() -> None:
    last = _at("2024-05-01T10:15:00")
    daily_noon = "0 12 * * *"
    assert not schedule_due(
        now=_at("2024-05-01T11:59:59"), last_run_at=last, interval_s=None, cron=daily_noon
    )
    assert schedule_due(
        now=_at("2024-05-01T12:00:00"), last_run_at=last, interval_s=None, cron=daily_noon
    )


def test_a_bad_cron_expression_is_refused_with_the_flag() -> None:
    with pytest.raises(ConfigError, match="--cron"):
        CoordinatorSettings.parse({"model": "digits", "cron": "every day at noon"})


def test_psi_is_zero_on_the_same_distribution_and_large_on_a_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=5000)
    assert psi(reference, rng.normal(size=2000)) < 0.02
    assert psi(reference, rng.normal(loc=1.0, size=2000)) > 0.5  # the usual "big shift" is 0.25


def test_psi_handles_discrete_features_like_pixel_counts() -> None:
    rng = np.random.default_rng(1)
    reference = rng.integers(0, 17, size=3000).astype(float)
    assert psi(reference, rng.integers(0, 17, size=1000).astype(float)) < 0.05
    assert psi(reference, np.full(500, 16.0)) > 1.0
    assert psi(np.zeros(100), np.zeros(50)) == pytest.approx(0.0)  # constant column


def test_ks_statistic_matches_the_definition() -> None:
    assert ks(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])) == 0.0
    assert ks(np.array([0.0, 0.0]), np.array([1.0, 1.0])) == 1.0
    assert ks(np.array([1.0, 2.0, 3.0, 4.0]), np.array([3.0, 4.0])) == pytest.approx(0.5)


@pytest.mark.parametrize("test", ["psi", "ks"])
def test_drift_names_the_feature_that_moved(test: str) -> None:
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(2000, 5))
    current = rng.normal(size=(400, 5))
    current[:, 3] += 2.0
    found = drift(reference, current, test=test)
    assert found.feature == 3 and found.test == test
    calm = drift(reference, rng.normal(size=(400, 5)), test=test)
    assert calm.score < found.score / 4


def _settings(**kw: object) -> CoordinatorSettings:
    return CoordinatorSettings.parse({"model": "digits", "min_rows": 100, **kw})


def test_fired_lists_every_trigger_and_needs_a_new_row() -> None:
    settings = _settings(interval_s=60.0, drift_threshold=0.2)
    moved = Drift(score=0.9, feature=7, test="psi")
    obs = Observation(now=1000.0, max_row_id=500, new_rows=150, drift=moved, manual=True)
    reasons = fired(settings, obs, last_run_at=0.0)
    assert reasons[0] == "manual" and "rows>=100" in reasons and "schedule" in reasons
    assert "drift:psi>0.2" in reasons
    assert not any("0.900" in r or "feature" in r for r in reasons)  # no statistic leaves
    nothing_new = Observation(now=1000.0, max_row_id=500, new_rows=0, drift=moved, manual=True)
    assert fired(settings, nothing_new, last_run_at=0.0) == []


def test_fired_is_quiet_below_every_threshold() -> None:
    settings = _settings(interval_s=60.0, drift_threshold=0.2)
    calm = Drift(score=0.1, feature=0, test="psi")
    obs = Observation(now=1030.0, max_row_id=500, new_rows=99, drift=calm)
    assert fired(settings, obs, last_run_at=1000.0) == []
