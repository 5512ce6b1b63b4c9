"""Retrain one row window of a model as a Ray job (no gate, no alias moves).

``python -m inhouse.jobs.retrain --model digits --after-id N --up-to-id M`` runs
:func:`inhouse.coordinator.retrain.run_retrain`, the retrain the coordinator actor runs
in-process, and prints what it measured as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from inhouse.config import CoordinatorSettings, load_settings
from inhouse.coordinator import run_id
from inhouse.coordinator.retrain import run_retrain
from inhouse.kinds.updating import RetrainJob


def main(argv: list[str] | None = None) -> int:
    """Parse the window, run the retrain, print the measurement."""
    parser = argparse.ArgumentParser(prog="python -m inhouse.jobs.retrain", description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--after-id", type=int, required=True)
    parser.add_argument("--up-to-id", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args(argv)
    cs = CoordinatorSettings.parse(
        {"model": args.model, "dataset": args.dataset, "epochs": args.epochs}
    )
    job = RetrainJob(
        run_id=run_id(args.model, args.after_id, args.up_to_id),
        after_id=args.after_id,
        up_to_id=args.up_to_id,
        reasons=["job"],
    )
    measured = run_retrain(load_settings(), cs, job)
    print(json.dumps(dataclasses.asdict(measured), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
