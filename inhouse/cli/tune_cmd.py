"""``inhouse tune``: a hyperparameter search over the training job, submitted as a Ray job.

::

    inhouse tune --num-trials 8 --max-epochs 10 --lr-min 1e-4 --lr-max 1e-2 \\
        --hidden-choices 64,64 128,64 256 --batch-sizes 16 32 64

Ray Tune samples ``num_trials`` configurations from the search space (learning rate
log-uniform, hidden layer sizes and batch size chosen from lists), trains each with Ray Train,
stops the weak ones early (ASHA) and registers the best as a new version whose lineage holds
the whole search. The training flags (``--dataset``, ``--model``, ``--dp`` …) are those of
``inhouse train``; with DP-SGD on, every trial spends privacy budget of its own.
"""

from __future__ import annotations

import argparse
from typing import Any

from inhouse.cli.parser import leaf
from inhouse.config import Settings, TrainSettings, TuneSettings
from inhouse.flags import add_section_flags, section_argv, section_overrides


def tune_args(settings: Settings, tune: TuneSettings) -> list[str]:
    """The ``python -m inhouse.jobs.tune`` argument list for these settings."""
    return section_argv(settings.train) + section_argv(tune)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tune`` on the ``inhouse`` sub-command parsers; returns its parser."""
    help_text = "search hyperparameters (Ray Tune, ASHA) and register the best trial"
    parser = leaf(subparsers, "tune", cmd_tune, help_text)
    add_section_flags(parser, TrainSettings)
    add_section_flags(parser, TuneSettings)
    return parser


def cmd_tune(settings: Settings, args: argparse.Namespace) -> int:
    """Submit ``inhouse.jobs.tune`` to the cluster, follow it and print the best trial."""
    from inhouse.cli.auth import authorize
    from inhouse.cli.ray_ops import run_job

    tune = TuneSettings(**section_overrides(args, TuneSettings))
    authorize(
        settings,
        action="train:submit",
        resource=settings.train.model,
        detail=f"tune {tune.num_trials} trials on data set {settings.train.dataset}",
    )
    if getattr(settings.train, "dp", False):
        print(
            f"DP-SGD is on: each of the {tune.num_trials} trials is charged to the privacy "
            f"budget of data set {settings.train.dataset!r} (up to {tune.num_trials}x one run)."
        )
    result = run_job(settings, "inhouse.jobs.tune", tune_args(settings, tune))
    best = result["best"]
    print(
        f"best of {result['trials']} trials: {best['config']} -> test accuracy "
        f"{best['test_accuracy']:.4f}; registered {result['model']} v{result['version']}"
    )
    for trial in result["all_trials"]:
        print(
            f"  {trial['trial_id']}: {trial['config']} epochs {trial['epochs']} "
            f"test accuracy {trial.get('test_accuracy', float('nan')):.4f} ({trial['status']})"
        )
    print(f"TensorBoard: {result['tensorboard']}")
    return 0
