"""The coordinator keeps a text model up to date without Ray: new rows -> a LoRA adapter
against the champion's base, warm-started from the previous adapter, measured as the replica
serves it (merged, int8), gated, promoted; wrong labels are rejected; settings that cannot
work for text are refused before anything starts."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

import pytest

from inhouse import services
from inhouse.config import CoordinatorSettings, Settings, load_settings
from inhouse.coordinator.control import start
from inhouse.coordinator.feedback import feedback
from inhouse.coordinator.retrain import run_retrain
from inhouse.coordinator.service import Coordinator
from inhouse.errors import InvalidInputError
from tests.text_champion import DATASET, MODEL, append_text_stream, make_text_champion

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("text-home")
    make_text_champion(load_settings(home=str(home)), tmp_path_factory.mktemp("text-files"))
    return home


@pytest.fixture()
def settings(base_home: Path, tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    shutil.copytree(base_home, home)
    return load_settings(home=str(home))


def _coordinator(settings: Settings, **kw: Any) -> Coordinator:
    cs = CoordinatorSettings(
        **{
            "model": MODEL,
            "dataset": DATASET,
            "min_rows": 30,
            "epochs": 3,
            "batch_size": 8,
            "lr": 2e-3,
            "replay_ratio": 1.0,
            "canary_share": 0.0,
            **kw,
        }
    )
    registry = services.registry(settings)
    start(registry, cs)
    return Coordinator(
        engine=services.engine(settings),
        registry=registry,
        settings=cs,
        retrain=functools.partial(run_retrain, settings),
    )


def test_new_texts_become_a_lora_adapter_then_a_warm_started_one(settings: Settings) -> None:
    coordinator = _coordinator(settings)
    registry, engine = coordinator.registry, coordinator.engine
    champion = registry.get(MODEL, "champion")
    base_version = int(champion.lineage["parent"]["version"])  # the float classifier
    assert coordinator.step().action == "wait"
    first_window_end = append_text_stream(engine, 45, seed=21)
    report = coordinator.step()
    assert report.action == "promote", report.reason
    assert report.measured is not None and report.measured.extra["precision"] == "int8"
    first = registry.get(MODEL, "champion")
    assert first.spec["role"] == "adapter" and first.spec["method"] == "lora"
    assert first.spec["base"] == {"model": MODEL, "version": base_version}
    assert first.lineage["rows"]["up_to_id"] == first_window_end
    assert first.lineage["rows"]["new_train_rows"] == 45
    assert first.lineage["rows"]["replay_rows"] == 45
    assert first.lineage["warm_start"]["from_version"] is None  # a fresh adapter
    assert first.metrics["trainable_fraction"] < 0.5
    assert report.measured.candidate_accuracy >= 0.9
    assert registry.aliases(MODEL)["previous"] == champion.version

    append_text_stream(engine, 45, seed=22)
    report = coordinator.step()
    assert report.action == "promote", report.reason
    second = registry.get(MODEL, "champion")
    assert second.spec["base"] == {"model": MODEL, "version": base_version}  # same base
    assert second.lineage["warm_start"]["from_version"] == first.version
    assert second.lineage["rows"]["first_id"] == first_window_end + 1
    assert coordinator.store.load(MODEL).watermark == second.lineage["rows"]["up_to_id"]


def test_a_head_only_retrain_and_a_wrong_labelled_window_is_rejected(settings: Settings) -> None:
    coordinator = _coordinator(settings, text_method="head", replay_ratio=0.0, epochs=6, lr=1e-2)
    append_text_stream(coordinator.engine, 60, seed=23, wrong_labels=True)
    report = coordinator.step()
    assert report.action == "reject", report.reason
    assert "below the champion" in report.reason
    candidate = coordinator.registry.get(MODEL, str(report.measured.candidate_version))  # type: ignore[union-attr]
    assert candidate.spec["method"] == "head" and candidate.lineage["rows"]["replay_rows"] == 0
    champion = coordinator.registry.get(MODEL, "champion")
    assert champion.spec["role"] == "classifier"  # unchanged
    assert coordinator.store.load(MODEL).watermark == candidate.lineage["rows"]["up_to_id"]


def test_canary_feedback_scores_text_versions_on_new_labelled_rows(settings: Settings) -> None:
    registry, engine = services.registry(settings), services.engine(settings)
    champion = registry.get(MODEL, "champion")
    watermark = append_text_stream(engine, 10, seed=24)
    fp32 = int(champion.lineage["parent"]["version"])
    common = {"model": MODEL, "dataset": DATASET, "candidate": fp32, "champion": champion.version}
    assert feedback(registry, engine, after_id=watermark, min_rows=20, **common) is None
    append_text_stream(engine, 30, seed=25, split="test")
    found = feedback(registry, engine, after_id=watermark, min_rows=20, **common)
    assert found is not None and found.rows == 30
    assert found.candidate_accuracy >= 0.9 and found.champion_accuracy >= 0.9


def test_settings_that_cannot_work_for_a_text_model_are_refused(settings: Settings) -> None:
    registry = services.registry(settings)
    from inhouse.data import seed

    seed(services.engine(settings), "digits")
    cases = {
        "holds tabular rows": {"dataset": "digits"},
        "drift-threshold compares numeric features": {"dataset": DATASET, "drift_threshold": 0.2},
    }
    for message, values in cases.items():
        with pytest.raises(InvalidInputError, match=message):
            start(registry, CoordinatorSettings(model=MODEL, **values))


def test_a_dp_retrain_is_charged_to_the_ledger_and_recorded(settings: Settings) -> None:
    from opacus.accountants import PRVAccountant

    from inhouse.privacy import PrivacyLedger

    coordinator = _coordinator(
        settings, text_method="head", dp=True, noise_multiplier=1.0, max_grad_norm=1.0, epochs=2
    )
    append_text_stream(coordinator.engine, 45, seed=26)
    report = coordinator.step()
    assert report.measured is not None
    candidate = coordinator.registry.get(MODEL, str(report.measured.candidate_version))
    privacy = candidate.lineage["privacy"]
    assert privacy["dp"] and privacy["noise_multiplier"] == 1.0 and privacy["steps"] > 0
    accountant = PRVAccountant()
    accountant.history = [(privacy["noise_multiplier"], privacy["sample_rate"], privacy["steps"])]
    expected = accountant.get_epsilon(delta=privacy["delta"])
    assert candidate.metrics["epsilon"] == pytest.approx(expected, rel=1e-3)
    ledger = PrivacyLedger(coordinator.engine)
    assert ledger.spent(DATASET) == pytest.approx(expected, rel=1e-3)
    assert ledger.charge(int(privacy["charge_id"])).status == "committed"
