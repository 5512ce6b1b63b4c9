"""The text kind's training (``TRAINING``): fine-tune a Hugging Face encoder classifier.

The start is a local Hugging Face directory (``--model-dir``, checked and loaded offline) or a
registered text version (``--base NAME[:REF]``). ``--method full`` fine-tunes every weight and
registers the float classifier plus its int8 version (served when it loses at most
``--max-accuracy-drop`` points); ``head`` and ``lora`` train a small fraction of the weights
and register an adapter versioned against the base (:mod:`inhouse.kinds.text.register`). Each
worker (:mod:`inhouse.kinds.text.worker`) tokenises its shard itself; mixed precision (bf16,
else fp16) runs only on CUDA.

``--dp`` (``head`` and ``lora``; a method whose layers Opacus cannot clip per example is
refused with the layers named, :mod:`inhouse.kinds.text.private`) plans the run and charges the
data set's privacy budget before any worker starts, exactly as the tabular kind does.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inhouse.config import Settings, TextTrainOptions, settings_payload
from inhouse.kinds.training import Trained, TrainingRun, WorkerConfig, WorkerPlace

if TYPE_CHECKING:
    from inhouse.kinds.text.worker import TextWorker


class TextTraining:
    """:class:`inhouse.kinds.training.TrainingKind` for text classifiers."""

    options_type = TextTrainOptions

    def options(self, settings: Settings, args: argparse.Namespace) -> TextTrainOptions:
        """The flags given; the data set is the ``train`` settings' one when not given."""
        given = argparse.Namespace(**vars(args))
        given.dataset = getattr(args, "dataset", None) or settings.train.dataset
        return TextTrainOptions.from_args(given)

    def prepare(
        self, settings: Settings, options: TextTrainOptions, *, name: str, directory: Path
    ) -> TrainingRun:
        """Refuse bad options (missing dir, unknown base, layers DP cannot clip, a budget the
        run would overspend, non-DP on a budgeted data set) before any worker starts."""
        from inhouse import services
        from inhouse.data import describe
        from inhouse.kinds.text.private import check_private, prepare_text
        from inhouse.kinds.text.start import start_model
        from inhouse.kinds.text.worker import TextWorkerConfig

        engine = services.engine(settings)
        info = describe(engine, options.dataset)
        model, tokenizer, spec, base = start_model(settings, options, info.class_names)
        if options.dp:
            check_private(model, tokenizer, options)
        privacy = prepare_text(engine=engine, options=options, info=info, run_name=name)
        config = TextWorkerConfig(
            options=options,
            settings=settings_payload(settings),
            class_names=list(info.class_names),
            up_to_id=info.last_id,
            privacy=privacy.worker_config(),
        )
        return TrainingRun(
            name=name,
            directory=directory,
            epochs=options.epochs,
            privacy=privacy,
            model=model,
            worker_config=config,
            cpus_per_worker=options.cpus_per_worker,
            state={"info": info, "tokenizer": tokenizer, "spec": spec, "base": base},
        )

    def worker(self, config: WorkerConfig, place: WorkerPlace) -> TextWorker:
        from inhouse.kinds.text.worker import TextWorker

        return TextWorker(config, place)

    def finish(
        self, settings: Settings, options: TextTrainOptions, run: TrainingRun, trained: Trained
    ) -> dict[str, Any]:
        """Register the classifier (and its int8 version) or the adapter; settle the ledger."""
        from inhouse import services
        from inhouse.data.text_import import read_text_rows
        from inhouse.kinds.text.register import register_result

        engine = services.engine(settings)
        info = run.state["info"]
        dp_steps = trained.reported.get("dp_steps")  # reported through Ray, not a file
        test = read_text_rows(engine, options.dataset, split="test", up_to_id=info.last_id)
        calibration: list[str] = []  # training texts calibrate the int8 copy's smoothing
        if not options.dp:  # (a DP run's budget does not cover statistics of raw rows)
            calibration = read_text_rows(
                engine, options.dataset, split="train", up_to_id=info.last_id
            ).texts
        summary = register_result(
            settings,
            options,
            model=run.model,
            tokenizer=run.state["tokenizer"],
            spec=run.state["spec"],
            base=run.state["base"],
            test=test,
            history=trained.history,
            info=info,
            run_name=run.name,
            privacy=run.privacy.lineage(reported_steps=dp_steps),
            calibration_texts=calibration,
        )
        run.privacy.settle(engine, reported_steps=dp_steps, version=summary["version"])
        return summary | {"run_dir": str(run.directory), "train_seconds": round(trained.seconds, 2)}

    def summary_lines(self, summary: dict[str, Any]) -> list[str]:
        lines = [
            f"trained {summary['model']} v{summary['version']} ({summary['method']}): test "
            f"accuracy {summary['test_accuracy']:.4f} in {summary['train_seconds']} s; serving "
            f"v{summary['served_version']}"
        ]
        privacy = summary.get("privacy") or {}
        if privacy.get("dp"):
            lines.append(
                f"DP: ε={privacy['epsilon']:.3f} (δ={privacy['delta']:g}, "
                f"{privacy['accountant']}), noise {privacy['noise_multiplier']:.3g}, "
                f"q={privacy['sample_rate']:.3g}, {privacy['steps']} steps; charged to the data "
                "set's privacy budget"
            )
        return lines


TRAINING = TextTraining()
