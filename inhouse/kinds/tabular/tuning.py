"""The tabular kind's tuning (``TUNING``): the best trial's MLP, evaluated and registered."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inhouse.config import Settings, TrainSettings
    from inhouse.kinds.tuning import BestTrial


class TabularTuning:
    """:class:`inhouse.kinds.tuning.TuningKind` for MLPs."""

    def register_best(
        self, settings: Settings, best: BestTrial, search: dict[str, Any]
    ) -> dict[str, Any]:
        from inhouse import services
        from inhouse.data import describe, read_rows
        from inhouse.kinds import build_model, register_module
        from inhouse.kinds.tabular.register import run_lineage
        from inhouse.kinds.tabular.training import builder_spec, layout_image, mlp_spec
        from inhouse.training import evaluate, load_checkpoint

        options: TrainSettings = best.options
        engine = services.engine(settings)
        info = describe(engine, options.dataset)
        image = layout_image(engine, options.dataset)
        spec = (
            builder_spec(settings, info, options, image)
            if options.builder
            else mlp_spec(info, options.hidden, image, options.activation)
        )
        model = build_model(spec)
        # The trial's run name and the epoch Tune recorded, not what the checkpoint's files say.
        history = load_checkpoint(
            best.checkpoint,
            model=model,
            keyring=services.keyring(settings),
            artifact_id=best.artifact_id,
            epoch=best.epoch,
        )
        test = read_rows(engine, options.dataset, split="test", up_to_id=info.last_id)
        final = evaluate(model, test.x, test.y)
        lineage = run_lineage(
            options.dataset,
            info,
            run_name=best.run_name,
            run_dir=str(best.run_dir),
            config=options.model_dump(mode="json"),
        )
        lineage["privacy"] = {"dp": options.dp, "trials_charged": search["num_trials"]}
        lineage["search"] = search
        metrics = {
            "test_accuracy": final.accuracy,
            "test_loss": final.loss,
            "train_accuracy": history["train_accuracy"],
            "tune_seconds": search["seconds"],
        }
        registry = services.registry(settings)
        version = register_module(
            registry, options.model, module=model, spec=spec, metrics=metrics, lineage=lineage
        )
        if options.promote:
            registry.set_alias(options.model, "champion", version.version)
        return {"version": version.version, "test_accuracy": final.accuracy}


TUNING = TabularTuning()
