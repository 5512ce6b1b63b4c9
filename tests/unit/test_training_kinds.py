"""The training half of every model kind, driven without Ray as ``jobs/train.py`` drives it: the
driver prepares a run, one worker trains an epoch and reports; the kind's options round-trip
through the job's flags; ``inhouse train`` refuses another kind's flag."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import torch

from inhouse import services
from inhouse.cli import main
from inhouse.config import Settings, TextTrainOptions, TrainSettings, load_settings
from inhouse.data import seed
from inhouse.data.text_import import import_text_csv
from inhouse.errors import InvalidInputError
from inhouse.flags import add_section_flags, section_argv
from inhouse.kinds import kind_named, known_kinds
from inhouse.kinds.training import TrainingKind, WorkerPlace, new_run
from tests.hf_tiny import make_rows, make_tiny_bert, write_csv

COMMON = ("dataset", "model", "epochs", "num_workers", "use_gpu", "max_failures")


def _parse(training: TrainingKind, settings: Settings, argv: list[str]) -> Any:
    parser = argparse.ArgumentParser()
    add_section_flags(parser, training.options_type)
    return training.options(settings, parser.parse_args(argv))


def _one_epoch(settings: Settings, kind: str, options: Any) -> dict[str, Any]:
    """Prepare a run as the job's driver does, then one worker's first epoch (world of 1)."""
    training = kind_named(kind).training
    name, directory = new_run(settings, "train", options.model)
    run = training.prepare(settings, options, name=name, directory=directory)
    config = run.worker_config | {
        "kind": kind,
        "run_name": name,
        "epochs": run.epochs,
        "tensorboard_dir": str(directory / "tensorboard"),
    }
    worker = training.worker(config, WorkerPlace(rank=0, world=1, device=torch.device("cpu")))
    worker.start(state=None, start_epoch=0, wrap=lambda module: module)
    metrics = worker.epoch(0)
    assert worker.checkpoint_state() == {}  # not DP: no accountant
    worker.close()
    assert metrics["epoch"] == 0 and metrics["backend"] == "none"
    return metrics


def test_every_kind_has_options_the_job_can_read() -> None:
    trainable = [name for name in known_kinds() if kind_named(name).has_part("training")]
    assert {"tabular", "text"} <= set(trainable)
    for name in trainable:
        fields = kind_named(name).training.options_type.model_fields
        assert set(COMMON) <= set(fields), name
    with pytest.raises(InvalidInputError, match="'llm' cannot be trained here; kinds that can"):
        kind_named("llm").training


def test_options_round_trip_through_the_job_flags(tmp_path: Path) -> None:
    settings = load_settings(home=str(tmp_path))
    tabular = TrainSettings(
        dataset="breast_cancer",
        hidden=[32, 16],
        dp=True,
        target_epsilon=2.0,
        use_gpu=False,
        dp_bounds=Path("bounds.json"),
    )
    parsed = _parse(kind_named("tabular").training, settings, section_argv(tabular))
    assert parsed == tabular.model_copy(update={"dp_bounds": Path("bounds.json").resolve()})
    text = TextTrainOptions(dataset="d", model="m", base="b", method="lora", lr=1e-3)
    assert _parse(kind_named("text").training, settings, section_argv(text)) == text


def test_the_text_kind_takes_the_train_sections_data_set(tmp_path: Path) -> None:
    settings = load_settings(home=str(tmp_path), train={"dataset": "tickets"})
    options = _parse(kind_named("text").training, settings, ["--model", "m", "--base", "b"])
    assert options.dataset == "tickets" and options.method == "full"


def test_a_tabular_worker_trains_an_epoch_without_ray(tmp_path: Path) -> None:
    settings = load_settings(home=str(tmp_path), train={"num_workers": 1})
    seed(services.engine(settings), "digits")
    metrics = _one_epoch(settings, "tabular", settings.train)
    assert metrics["test_accuracy"] > 0.5 and metrics["train_loss"] > 0
    assert list((tmp_path / "runs").rglob("events.out.tfevents.*"))  # rank 0 wrote TensorBoard


def test_a_text_worker_trains_an_epoch_without_ray(tmp_path: Path) -> None:
    settings = load_settings(home=str(tmp_path))
    import_text_csv(
        services.engine(settings),
        name="intents",
        csv_path=write_csv(tmp_path / "train.csv", make_rows(48)),
        test_csv=write_csv(tmp_path / "test.csv", make_rows(12, seed=9)),
        label_column="category",
    )
    options = TextTrainOptions(
        dataset="intents",
        model="intents",
        model_dir=str(make_tiny_bert(tmp_path / "tiny")),
        batch_size=8,
        max_length=16,
        num_workers=1,
    )
    metrics = _one_epoch(settings, "text", options)
    assert metrics["amp"] == "off" and 0.0 <= metrics["probe_accuracy"] <= 1.0
    assert metrics["train_loss"] > 0


def test_inhouse_train_refuses_a_flag_of_another_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = ["--home", str(tmp_path)]
    assert main([*home, "data", "seed", "digits"]) == 0
    capsys.readouterr()
    assert main([*home, "train", "--method", "lora", "--max-length", "32"]) == 2
    error = capsys.readouterr().err
    assert "holds tabular rows" in error and "--max-length, --method" in error
