"""Ray Tune over the training job on the shared cluster: ASHA, the best trial registered with the
whole search in its lineage, TensorBoard written per trial and for the search."""

from __future__ import annotations

from pathlib import Path

import pytest

from inhouse import services
from inhouse.cli.tune_cmd import tune_args
from inhouse.config import Settings, TuneSettings, load_settings
from inhouse.data import seed
from inhouse.errors import ConfigError
from inhouse.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.scale]

MODEL = "digits_tuned"


def test_search_space_is_validated_and_becomes_job_flags() -> None:
    tune = TuneSettings(hidden_choices=["32", "64,32"], batch_sizes=[32], max_epochs=3)
    assert tune.hidden_layers() == [[32], [64, 32]]
    assert tune.space()["batch_size"] == {"choice": [32]}
    argv = tune_args(load_settings(train={"model": MODEL}), tune)
    assert argv[argv.index("--hidden-choices") + 1 : argv.index("--hidden-choices") + 3] == [
        "32",
        "64,32",
    ]
    assert "--max-epochs" in argv and "--model" in argv
    for bad in (
        {"hidden_choices": ["64,x"]},
        {"lr_min": 0.1, "lr_max": 0.01},
        {"grace_period": 4, "max_epochs": 2},
        {"batch_sizes": []},
    ):
        with pytest.raises(ValueError):
            TuneSettings(**bad)
    with pytest.raises(ConfigError):
        load_settings(serve={"min_replicas": 3, "max_replicas": 2})


def test_asha_search_registers_the_best_trial_with_its_lineage(
    ray_cluster: Settings, tmp_path: Path
) -> None:
    from inhouse.jobs import tune

    settings = load_settings(
        home=str(ray_cluster.home),
        database_url=f"sqlite:///{tmp_path / 'tune.db'}",
        train={"model": MODEL, "promote": True, "max_failures": 0},
    )
    seed(services.engine(settings), "digits")
    search = TuneSettings(
        num_trials=3,
        max_concurrent_trials=2,
        max_epochs=3,
        grace_period=1,
        reduction_factor=2,
        lr_min=1e-3,
        lr_max=1e-2,
        hidden_choices=["32", "64,32"],
        batch_sizes=[32, 64],
    )

    summary = tune.run(settings, search)

    assert summary["trials"] == 3 and summary["model"] == MODEL
    trials = summary["all_trials"]
    assert all(t["status"] == "finished" for t in trials), trials
    assert all(1 <= t["epochs"] <= 3 for t in trials)
    assert len({(t["config"]["lr"], t["config"]["batch_size"]) for t in trials}) == 3
    best = summary["best"]
    assert best["test_accuracy"] == max(t["test_accuracy"] for t in trials)
    assert max(t["epochs"] for t in trials) == 3  # ASHA let at least one trial finish
    assert summary["test_accuracy"] == pytest.approx(best["test_accuracy"], abs=1e-6)
    assert summary["test_accuracy"] >= 0.85

    registry: Registry = services.registry(settings)
    version = registry.get(MODEL)  # champion
    assert version.version == summary["version"]
    search_lineage = version.lineage["search"]
    assert search_lineage["scheduler"]["name"] == "ASHA"
    assert search_lineage["scheduler"]["max_t"] == 3
    assert search_lineage["space"]["lr"] == {"loguniform": [1e-3, 1e-2]}
    assert search_lineage["num_trials"] == 3 and len(search_lineage["trials"]) == 3
    assert search_lineage["best_config"] == best["config"]
    assert version.lineage["config"]["lr"] == best["config"]["lr"]
    assert version.lineage["config"]["hidden"] == best["config"]["hidden"]
    assert version.lineage["privacy"]["dp"] is False
    assert version.spec["hidden"] == best["config"]["hidden"]
    assert version.metrics["test_accuracy"] == pytest.approx(summary["test_accuracy"])

    board = Path(summary["run_dir"], "tensorboard")
    per_trial = [d for d in board.iterdir() if d.name != "hparams"]
    assert len(per_trial) == 3
    assert all(list(d.glob("events.out.tfevents.*")) for d in per_trial)
    assert list((board / "hparams").rglob("events.out.tfevents.*"))
