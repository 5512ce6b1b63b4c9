"""Search the training job's hyperparameters with Ray Tune and register the best trial.

Run it on a cluster as a user would::

    ray job submit --working-dir . -- python -m jobs.tune --num-trials 8 --max-epochs 10

Each trial is a Ray Train run of ``jobs.train.train_loop_per_worker`` (Train V2: the Tune
trial starts a ``TorchTrainer``, whose per-epoch reports reach Tune through
``TuneReportCallback``). ASHA stops weak trials early on ``test_accuracy``. Every trial writes
TensorBoard scalars under ``<run_dir>/tensorboard/<trial>``, and the search writes one HParams
table (``<run_dir>/tensorboard/hparams``); the Ray dashboard shows each trial's Train run.
The best trial's final checkpoint is evaluated on the test split and registered as a version
whose lineage holds the search: space, scheduler, trials, best config, every trial's metrics.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
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
from inhouse.data import DatasetInfo, read_rows
from inhouse.flags import add_section_flags, section_overrides
from inhouse.models import build_model
from inhouse.schema import get_engine
from inhouse.training import evaluate, load_checkpoint, private_run
from jobs.driver import joined_cluster
from jobs.train import setup_run, train_loop_per_worker

METRIC = "test_accuracy"
TRIAL_DRIVER_CPUS = 0.05
FINAL_KEYS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "epsilon")


def _trial_privacy(
    cfg: TrainSettings, info: DatasetInfo, db_url: str, run_name: str, workers: int
) -> private_run.PrivateRun:
    """PRIVACY-LEDGER HOOK: plan and reserve this trial's DP spend (or check non-DP access).

    Each trial is its own DP run: the ledger refuses it when the data set's budget cannot
    cover it. A trial that ASHA stops keeps its planned spend charged (it never settles),
    which over-counts rather than under-counts.
    """
    return private_run.prepare(
        engine=get_engine(db_url), cfg=cfg, info=info, run_name=run_name, num_workers=workers
    )


def run_trial(config: dict[str, Any], *, base: dict[str, Any]) -> None:
    """One Tune trial: a Ray Train run with the sampled ``lr``, ``hidden`` and ``batch_size``."""
    trial_id = ray.tune.get_context().get_trial_id()
    cfg: TrainSettings = base["train"].model_copy(
        update={
            "lr": config["lr"],
            "hidden": config["hidden"],
            "batch_size": config["batch_size"],
            "epochs": base["epochs"],
            "num_workers": base["workers"],
        }
    )
    run_name = f"{base['run_name']}-{trial_id}"
    privacy = _trial_privacy(cfg, base["info"], base["db_url"], run_name, base["workers"])
    loop_config = {
        **privacy.worker_config(),
        **cfg.model_dump(),
        "run_name": run_name,
        "key_dir": base["key_dir"],
        "spec": {**base["spec"], "hidden": config["hidden"]},
        "db_url": base["db_url"],
        "up_to_id": base["info"].last_id,
        "tensorboard_dir": str(Path(base["run_dir"], "tensorboard", trial_id)),
        "crash_at_epoch": None,
        "crash_marker": None,
    }
    trainer = ray.train.torch.TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu),
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=base["storage_path"],
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            callbacks=[TuneReportCallback()],
        ),
    )
    engine = get_engine(base["db_url"])
    try:
        result = trainer.fit()
    except BaseException:
        privacy.fail(engine)
        raise
    # Settled with the driver's own count: the plan, or more if the workers reported more
    # through Ray; never with a count read back from a checkpoint file.
    privacy.settle(engine, reported_steps=(result.metrics or {}).get("dp_steps"), version=None)


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
        "config": {k: result.config[k] for k in ("lr", "hidden", "batch_size")},
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


def run(settings: Settings, tune_cfg: TuneSettings) -> dict[str, Any]:
    """Search, register the best trial; returns the summary dict."""
    cfg = settings.train
    engine, info, spec, run_name, run_dir = setup_run(settings, "tune")
    keyring = services.keyring(settings)
    if getattr(cfg, "dp", False):
        print(
            f"DP-SGD is on: each of the {tune_cfg.num_trials} trials is charged to the privacy "
            f"budget of data set {cfg.dataset!r} as a run of its own.",
            flush=True,
        )
    base = {
        "train": cfg,
        "epochs": tune_cfg.max_epochs,
        "workers": tune_cfg.workers_per_trial,
        "run_name": run_name,
        "run_dir": str(run_dir),
        "key_dir": str(settings.key_dir) if keyring is not None else None,
        "spec": spec,
        "db_url": settings.db_url,
        "info": info,
        "storage_path": str(settings.runs_dir / "ray"),
    }
    scheduler = {
        "name": "ASHA",
        "metric": METRIC,
        "mode": "max",
        "max_t": tune_cfg.max_epochs,
        "grace_period": tune_cfg.grace_period,
        "reduction_factor": tune_cfg.reduction_factor,
    }
    # The trial only waits on its Train run, whose workers hold the CPUs; Tune refuses an
    # empty request, so it asks for a sliver.
    trainable = ray.tune.with_resources(
        ray.tune.with_parameters(run_trial, base=base), {"cpu": TRIAL_DRIVER_CPUS}
    )
    tuner = ray.tune.Tuner(
        trainable,
        param_space=_space(tune_cfg),
        tune_config=ray.tune.TuneConfig(
            num_samples=tune_cfg.num_trials,
            max_concurrent_trials=tune_cfg.max_concurrent_trials,
            scheduler=ASHAScheduler(
                metric=METRIC,
                mode="max",
                max_t=tune_cfg.max_epochs,
                grace_period=tune_cfg.grace_period,
                reduction_factor=tune_cfg.reduction_factor,
            ),
            search_alg=BasicVariantGenerator(random_state=tune_cfg.search_seed),
        ),
        run_config=ray.tune.RunConfig(name=run_name, storage_path=str(settings.runs_dir / "ray")),
    )
    started = time.perf_counter()
    grid = tuner.fit()
    seconds = time.perf_counter() - started
    trials = sorted(
        (_trial_summary(grid[i]) for i in range(len(grid))), key=lambda t: -t.get(METRIC, -1.0)
    )
    _write_hparams(run_dir, trials)
    best_result = grid.get_best_result(metric=METRIC, mode="max", scope="last")
    best_metrics = best_result.metrics or {}
    checkpoint_path = best_metrics.get(CHECKPOINT_PATH_KEY)
    if best_result.error or checkpoint_path is None:
        raise SystemExit("error: no trial finished with a checkpoint")
    best = _trial_summary(best_result)
    spec = {**spec, "hidden": best["config"]["hidden"]}
    model = build_model(spec)
    # The best trial's run name and the epoch Tune recorded with its last checkpoint, not what
    # the checkpoint's files say.
    history = load_checkpoint(
        Path(checkpoint_path),
        model=model,
        keyring=keyring,
        artifact_id=f"{run_name}-{best_metrics['trial_id']}",
        epoch=int(best_metrics["epoch"]),
    )
    test = read_rows(engine, cfg.dataset, split="test", up_to_id=info.last_id)
    final = evaluate(model, test.x, test.y)
    best_cfg = cfg.model_copy(update={**best["config"], "epochs": best["epochs"]})
    lineage = {
        "dataset": cfg.dataset,
        "rows": {
            "first_id": info.first_id,
            "up_to_id": info.last_id,
            "train_rows": info.train_rows,
            "test_rows": info.test_rows,
        },
        "config": best_cfg.model_dump(mode="json"),
        "code_revision": os.environ.get("INHOUSE_CODE_REVISION", "unknown"),
        "run": run_name,
        "run_dir": str(run_dir),
        "parent": None,
        "privacy": {"dp": bool(getattr(cfg, "dp", False)), "trials_charged": len(trials)},
        "search": {
            "space": tune_cfg.space(),
            "scheduler": scheduler,
            "num_trials": len(trials),
            "max_concurrent_trials": tune_cfg.max_concurrent_trials,
            "workers_per_trial": tune_cfg.workers_per_trial,
            "best_trial": best["trial_id"],
            "best_config": best["config"],
            "trials": trials,
            "seconds": round(seconds, 2),
        },
    }
    metrics = {
        "test_accuracy": final.accuracy,
        "test_loss": final.loss,
        "train_accuracy": history["train_accuracy"],
        "tune_seconds": seconds,
    }
    registry = services.registry(settings)
    version = registry.register(
        cfg.model, module=model, spec=spec, metrics=metrics, lineage=lineage
    )
    if cfg.promote:
        registry.set_alias(cfg.model, "champion", version.version)
    return {
        "model": cfg.model,
        "version": version.version,
        "champion": cfg.promote,
        "test_accuracy": final.accuracy,
        "trials": len(trials),
        "best": best,
        "all_trials": trials,
        "tune_seconds": round(seconds, 2),
        "tensorboard": f"tensorboard --logdir {run_dir / 'tensorboard'}",
        "run_dir": str(run_dir),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.tune",
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
