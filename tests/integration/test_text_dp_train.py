"""DP text fine-tuning as a Ray Train DDP job: a private head on a tiny BERT (pretrained without
DP on public rows) learns three intents, the ledger is charged exactly what an independent
accountant says, the lineage carries the mechanism, and overspending or non-DP runs are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from opacus.accountants import PRVAccountant

from inhouse import services
from inhouse.config import Settings, TextTrainOptions
from inhouse.data.text_import import import_text_csv
from inhouse.errors import BudgetExceededError, ConfigError, PermissionDeniedError
from inhouse.jobs import train
from inhouse.privacy import PrivacyLedger
from tests.hf_tiny import make_rows, make_tiny_bert, write_csv

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DELTA = 1e-5
COMMON = {"lr": 2e-3, "batch_size": 8, "max_length": 16, "num_workers": 2}


def _dataset(settings: Settings, tmp_path: Path, name: str, *, prefix: str = "") -> None:
    def rows(n: int, seed: int) -> list[tuple[str, str]]:
        return [(text, prefix + intent) for text, intent in make_rows(n, seed=seed)]

    import_text_csv(
        services.engine(settings),
        name=name,
        csv_path=write_csv(tmp_path / f"{name}-train.csv", rows(300, 0 if not prefix else 5)),
        test_csv=write_csv(tmp_path / f"{name}-test.csv", rows(60, 9)),
        label_column="category",
    )


def test_private_head_learns_is_charged_exactly_and_overspending_is_refused(
    ray_cluster: Settings, tmp_path: Path
) -> None:
    # The "pretrained" base: a non-DP fine-tune on public rows whose classes have other names,
    # so the private run starts from a new, untrained head.
    _dataset(ray_cluster, tmp_path, "intents_public", prefix="public_")
    _dataset(ray_cluster, tmp_path, "intents_private")
    tiny = make_tiny_bert(tmp_path / "tiny")
    base = train.run(
        ray_cluster,
        TextTrainOptions(
            dataset="intents_public",
            model="intents-base",
            model_dir=str(tiny),
            epochs=3,
            compress=False,
            **COMMON,
        ),
    )
    ledger = PrivacyLedger(services.engine(ray_cluster))
    ledger.set_budget(dataset="intents_private", epsilon=4.0, delta=DELTA, actor="test-admin")
    private = {
        "dataset": "intents_private",
        "model": "intents-private",
        "base": "intents-base",
        "method": "head",
        "dp": True,
        "target_epsilon": 3.0,
        "epochs": 4,
        **COMMON | {"lr": 0.05},
    }
    summary = train.run(ray_cluster, TextTrainOptions(**private))
    assert summary["test_accuracy"] >= 0.85  # three intents: chance is 1/3
    version = services.registry(ray_cluster).get("intents-private", str(summary["version"]))
    assert version.spec["role"] == "adapter"
    assert version.lineage["base"] == {"model": "intents-base", "version": base["version"]}
    privacy = version.lineage["privacy"]
    assert privacy["dp"] and privacy["accountant"] == "prv" and privacy["delta"] == DELTA
    assert privacy["clipping"] == 1.0
    assert privacy["sample_rate"] == pytest.approx(1 / 19)  # 16 expected rows of 300 a step
    assert privacy["steps"] == 4 * 19  # every planned step, counted by the workers' accountant
    independent = PRVAccountant()
    independent.history = [(privacy["noise_multiplier"], privacy["sample_rate"], privacy["steps"])]
    expected = independent.get_epsilon(delta=DELTA)
    assert privacy["epsilon"] == pytest.approx(expected, rel=1e-3)
    assert privacy["epsilon"] == pytest.approx(3.0, abs=0.05)
    assert ledger.spent("intents_private") == pytest.approx(expected, rel=1e-3)
    charge = ledger.charge(privacy["charge_id"])
    assert charge.version == version.version and charge.steps == privacy["steps"]

    # Past the budget: refused before any worker starts, naming what is left and what it needs.
    with pytest.raises(BudgetExceededError, match=r"remaining 1\.0\d; this run needs ε=3\.0"):
        train.run(ray_cluster, TextTrainOptions(**private))
    with pytest.raises(PermissionDeniedError):  # non-DP on a budgeted data set
        train.run(ray_cluster, TextTrainOptions(**private | {"dp": False}))
    # A full fine-tune's position embeddings are shared by the batch: no per-example clipping.
    with pytest.raises(ConfigError, match=r"--method full .*position_embeddings"):
        full = private | {"method": "full", "base": None, "model_dir": str(tiny)}
        train.run(ray_cluster, TextTrainOptions(**full))
    assert ledger.spent("intents_private") == pytest.approx(expected, rel=1e-3)
