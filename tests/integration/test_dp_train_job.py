"""DP-SGD through Ray Train DDP: the ledger is charged exactly, refuses overspending, and a
killed worker resumes with the epsilon it had spent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opacus.accountants import PRVAccountant

from inhouse import services
from inhouse.config import Settings, load_settings
from inhouse.data import seed
from inhouse.errors import BudgetExceededError, PermissionDeniedError
from inhouse.jobs import train
from inhouse.privacy import PrivacyLedger
from inhouse.schema import get_engine

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DP_RUN = {
    "dataset": "breast_cancer",
    "model": "cancer_dp",
    "dp": True,
    "target_epsilon": 2.0,
    "epochs": 4,
    "batch_size": 64,
    "hidden": [16],
    "lr": 0.02,
    "promote": True,
}


def _settings(base: Settings, db_url: str, **overrides: object) -> Settings:
    return load_settings(home=str(base.home), database_url=db_url, train={**DP_RUN, **overrides})


def _run(settings: Settings, **kwargs: Any) -> dict[str, Any]:
    return train.run(settings, settings.train, **kwargs)


def test_dp_run_resumes_with_its_epsilon_and_is_charged_exactly(
    ray_cluster: Settings, pg_url: str
) -> None:
    engine = get_engine(pg_url)
    seed(engine, "breast_cancer")
    ledger = PrivacyLedger(engine)
    ledger.set_budget(dataset="breast_cancer", epsilon=3.0, delta=1e-5, actor="test-admin")

    summary = _run(_settings(ray_cluster, pg_url), crash_at_epoch=2)
    assert Path(summary["run_dir"], "crash-marker").exists()  # a worker really died
    info = services.registry(_settings(ray_cluster, pg_url)).get(
        "cancer_dp", str(summary["version"])
    )
    assert info.metrics["resumed_from_epoch"] == 2
    privacy = info.lineage["privacy"]
    assert privacy["dp"] and privacy["steps"] == 4 * 4  # q = 1/4: no step lost or repeated
    independent = PRVAccountant()
    independent.history = [(privacy["noise_multiplier"], privacy["sample_rate"], privacy["steps"])]
    expected = independent.get_epsilon(delta=1e-5)
    assert privacy["epsilon"] == pytest.approx(expected, rel=1e-3)
    assert privacy["epsilon"] == pytest.approx(2.0, abs=0.05)
    assert ledger.spent("breast_cancer") == pytest.approx(expected, rel=1e-3)
    assert summary["test_accuracy"] >= 0.85
    assert "published bounds" in privacy["feature_scaling"]
    served = services.registry(_settings(ray_cluster, pg_url)).get("cancer_dp")
    assert served.lineage["parent"]["version"] == info.version  # int8 of the DP version

    # A second run over the same rows composes (not sums) with the first; past the budget
    # it is refused before it starts.
    with pytest.raises(BudgetExceededError, match="remaining"):
        _run(_settings(ray_cluster, pg_url, target_epsilon=2.5))
    # Non-DP training on a budgeted data set needs an admin's explicit exemption.
    with pytest.raises(PermissionDeniedError):
        _run(_settings(ray_cluster, pg_url, dp=False, target_epsilon=None))
    assert ledger.spent("breast_cancer") == pytest.approx(expected, rel=1e-3)
