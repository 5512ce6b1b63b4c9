"""Search the training job's hyperparameters with Ray Tune and register the best trial.

Run it on a cluster as a user would::

    ray job submit --working-dir . -- python -m inhouse.jobs.tune --num-trials 8 --max-epochs 10

Each trial is a Ray Train run of ``inhouse.jobs.train.train_loop_per_worker`` (Train V2: the Tune
trial starts a ``TorchTrainer``, whose per-epoch reports reach Tune through
``TuneReportCallback``). ASHA stops weak trials early on ``test_accuracy``. Every trial writes
TensorBoard scalars under ``<run_dir>/tensorboard/<trial>``, and the search writes one HParams
table (``<run_dir>/tensorboard/hparams``); the Ray dashboard shows each trial's Train run.
The data set's kind (``kind.tuning``, :mod:`inhouse.kinds.tuning`; the search space is the
MLP's, so only the tabular kind has one and another is refused) evaluates the best trial's
final checkpoint on the test split and registers it as a version whose lineage holds the
search: space, scheduler, trials, best config, every trial's metrics.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
import ray.tune
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY, TuneReportCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import BasicVariantGenerator
from torch.utils.tensorboard import SummaryWriter

from inhouse import services
from inhouse.config import Settings, TrainSettings, TuneSettings, load_settings
from inhouse.console import RESULT_MARKER, emit
from inhouse.data import describe
from inhouse.data.consumed import check_consumed
from inhouse.errors import ConfigError
from inhouse.flags import add_section_flags, section_overrides
from inhouse.jobs.driver import joined_cluster
from inhouse.jobs.train import kind_for, kind_of, loop_config, trainer
from inhouse.kinds import kind_named
from inhouse.kinds.training import new_run
from inhouse.kinds.tuning import BestTrial, TuningKind
from inhouse.storage.runs import runs_storage

METRIC = "test_accuracy"
TRIAL_DRIVER_CPUS = 0.05
SPACE = ("lr", "hidden", "batch_size")
FINAL_KEYS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "epsilon")


@dataclass(frozen=True)
class SearchRun:
    """The search's run name (each trial's is ``<name>-<trial id>``) and directory."""

    name: str
    directory: Path


def run_trial(
    config: dict[str, Any], *, settings: Settings, options: TrainSettings, run: SearchRun
) -> None:
    """One Tune trial: a Ray Train run with the sampled ``lr``, ``hidden`` and ``batch_size``.

    PRIVACY-LEDGER HOOK: each trial is its own DP run, planned and reserved (or its non-DP
    access checked) by the kind; the ledger refuses it when the data set's budget cannot cover
    it. A trial that ASHA stops keeps its planned spend charged (it never settles), which
    over-counts rather than under-counts.
    """
    trial_id = ray.tune.get_context().get_trial_id()
    trial = options.model_copy(update={k: config[k] for k in SPACE})
    kind, training = kind_for(settings, trial)
    prepared = training.prepare(
        settings, trial, name=f"{run.name}-{trial_id}", directory=run.directory
    )
    tensorboard = run.directory / "tensorboard" / trial_id
    engine = services.engine(settings)
    try:
        result = trainer(
            settings,
            trial,
            prepared,
            loop_config(settings, kind, prepared, tensorboard=tensorboard),
            keep=1,
            callbacks=[TuneReportCallback()],
        ).fit()
    except BaseException:
        prepared.privacy.fail(engine)
        raise
    # Settled with the driver's own count: the plan, or more if the workers reported more
    # through Ray; never with a count read back from a checkpoint file.
    prepared.privacy.settle(
        engine, reported_steps=(result.metrics or {}).get("dp_steps"), version=None
    )


def _space(tune_cfg: TuneSettings) -> dict[str, Any]:
    """Tune's search space; lr_min == lr_max fixes the learning rate."""
    fixed = tune_cfg.lr_min == tune_cfg.lr_max
    return {
        "lr": tune_cfg.lr_min if fixed else ray.tune.loguniform(tune_cfg.lr_min, tune_cfg.lr_max),
        "hidden": ray.tune.choice(tune_cfg.hidden_layers()),
        "batch_size": ray.tune.choice(tune_cfg.batch_sizes),
    }


def _trial_summary(result: Any) -> dict[str, Any]:
    metrics = result.metrics or {}
    return {
        "trial_id": metrics.get("trial_id", Path(result.path).name),
        "config": {k: result.config[k] for k in SPACE},
        "epochs": int(metrics.get("training_iteration", 0)),
        "status": "error" if result.error else "finished",
        **{key: metrics[key] for key in FINAL_KEYS if key in metrics},
    }


def _write_hparams(run_dir: Path, trials: list[dict[str, Any]]) -> None:
    """One TensorBoard HParams row per trial: the search side by side."""
    with SummaryWriter(str(run_dir / "tensorboard" / "hparams")) as writer:
        for trial in trials:
            hparams = {
                "lr": trial["config"]["lr"],
                "hidden": ",".join(map(str, trial["config"]["hidden"])),
                "batch_size": trial["config"]["batch_size"],
            }
            final = {f"hparam/{k}": float(trial[k]) for k in ("test_accuracy",) if k in trial}
            final["hparam/epochs"] = float(trial["epochs"])
            writer.add_hparams(hparams, final, run_name=trial["trial_id"])


def _register_best(
    settings: Settings,
    tuning: TuningKind,
    run: SearchRun,
    best_result: Any,
    search: dict[str, Any],
) -> dict[str, Any]:
    """The kind registers the best trial's last checkpoint, its lineage holding the whole
    ``search``; returns the registered version's summary."""
    best_metrics = best_result.metrics or {}
    best = _trial_summary(best_result)
    options = settings.train.model_copy(update={**best["config"], "epochs": best["epochs"]})
    trial = BestTrial(
        checkpoint=Path(best_metrics[CHECKPOINT_PATH_KEY]),
        artifact_id=f"{run.name}-{best_metrics['trial_id']}",
        epoch=int(best_metrics["epoch"]),
        options=options,
        run_name=run.name,
        run_dir=run.directory,
    )
    search = search | {"best_trial": best["trial_id"], "best_config": best["config"]}
    return tuning.register_best(settings, trial, search) | {"best": best}


def run(settings: Settings, tune_cfg: TuneSettings) -> dict[str, Any]:
    """Search, register the best trial; returns the summary dict."""
    cfg = settings.train
    kind, _ = kind_of(settings, cfg.dataset)  # a data set with training rows
    tuning = kind_named(kind).tuning  # a kind without a search space here: a clear error
    kind_for(settings, cfg)  # whose options these are
    name, directory = new_run(settings, "tune", cfg.model)
    engine = services.engine(settings)  # the append-only contract, checked once per search
    check_consumed(engine, cfg.dataset, up_to=describe(engine, cfg.dataset).last_id, by=name)
    if cfg.dp:
        print(
            f"DP-SGD is on: each of the {tune_cfg.num_trials} trials is charged to the privacy "
            f"budget of data set {cfg.dataset!r} as a run of its own.",
            flush=True,
        )
    run = SearchRun(name, directory)
    trial_options = cfg.model_copy(
        update={"epochs": tune_cfg.max_epochs, "num_workers": tune_cfg.workers_per_trial}
    )
    asha: dict[str, Any] = {
        "metric": METRIC,
        "mode": "max",
        "max_t": tune_cfg.max_epochs,
        "grace_period": tune_cfg.grace_period,
        "reduction_factor": tune_cfg.reduction_factor,
    }
    # The trial only waits on its Train run, whose workers hold the CPUs; Tune refuses an
    # empty request, so it asks for a sliver.
    trainable = ray.tune.with_resources(
        ray.tune.with_parameters(run_trial, settings=settings, options=trial_options, run=run),
        {"cpu": TRIAL_DRIVER_CPUS},
    )
    storage_path, storage_filesystem = runs_storage(settings)  # storage.runs_uri, maybe S3
    tuner = ray.tune.Tuner(
        trainable,
        param_space=_space(tune_cfg),
        tune_config=ray.tune.TuneConfig(
            num_samples=tune_cfg.num_trials,
            max_concurrent_trials=tune_cfg.max_concurrent_trials,
            scheduler=ASHAScheduler(**asha),
            search_alg=BasicVariantGenerator(random_state=tune_cfg.search_seed),
        ),
        run_config=ray.tune.RunConfig(
            name=name, storage_path=storage_path, storage_filesystem=storage_filesystem
        ),
    )
    started = time.perf_counter()
    grid = tuner.fit()
    seconds = time.perf_counter() - started
    trials = sorted(
        (_trial_summary(grid[i]) for i in range(len(grid))), key=lambda t: -t.get(METRIC, -1.0)
    )
    _write_hparams(directory, trials)
    best_result = grid.get_best_result(metric=METRIC, mode="max", scope="last")
    if best_result.error or (best_result.metrics or {}).get(CHECKPOINT_PATH_KEY) is None:
        raise ConfigError("no trial finished with a checkpoint; see the Ray job logs")
    search = {
        "space": tune_cfg.space(),
        "scheduler": {"name": "ASHA", **asha},
        "num_trials": len(trials),
        "max_concurrent_trials": tune_cfg.max_concurrent_trials,
        "workers_per_trial": tune_cfg.workers_per_trial,
        "trials": trials,
        "seconds": round(seconds, 2),
    }
    registered = _register_best(settings, tuning, run, best_result, search)
    return registered | {
        "model": cfg.model,
        "champion": cfg.promote,
        "trials": len(trials),
        "all_trials": trials,
        "tune_seconds": round(seconds, 2),
        "tensorboard": f"tensorboard --logdir {directory / 'tensorboard'}",
        "run_dir": str(directory),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inhouse.jobs.tune",
        description="Search training hyperparameters (Ray Tune, ASHA); register the best trial.",
    )
    parser.add_argument("--config", help="YAML settings file (see README)")
    add_section_flags(parser, TrainSettings)
    add_section_flags(parser, TuneSettings)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings(config_file=args.config, train=section_overrides(args, TrainSettings))
    tune_cfg = TuneSettings(**section_overrides(args, TuneSettings))
    with joined_cluster():
        summary = run(settings, tune_cfg)
    emit(RESULT_MARKER, summary)
    print(
        f"best of {summary['trials']} trials: {summary['best']['config']}; registered "
        f"{summary['model']} v{summary['version']} (test accuracy {summary['test_accuracy']:.4f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
