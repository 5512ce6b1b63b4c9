"""The tabular kind's training (``TRAINING``): an MLP on the data set's numeric features, or
the user's own module (``--builder``, :mod:`inhouse.models.builder`).

Its options are the ``train`` settings section (:class:`inhouse.config.TrainSettings`, so a
YAML file and ``INHOUSE_TRAIN__*`` set them too). The driver plans the privacy of the run and
the public feature scaling of a DP run; each worker (:mod:`inhouse.kinds.tabular.worker`) reads
its rows, standardises them, trains with DDP or DP-SGD and writes TensorBoard; the driver then
evaluates the final weights on the test split and registers them
(:mod:`inhouse.kinds.tabular.register`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inhouse.config import Settings, TrainSettings, load_settings
from inhouse.flags import section_overrides
from inhouse.kinds.training import Trained, TrainingRun, WorkerConfig, WorkerPlace

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from inhouse.data import DatasetInfo
    from inhouse.kinds.tabular.worker import TabularWorker


def layout_image(engine: Engine, dataset: str) -> dict[str, Any] | None:
    """The data set layout's ``image`` ({height, width}: its features are pixels), or None."""
    from inhouse.data.store import get_dataset

    image = (get_dataset(engine, dataset).layout or {}).get("image")
    return dict(image) if isinstance(image, dict) else None


def mlp_spec(
    info: DatasetInfo,
    hidden: list[int],
    image: dict[str, Any] | None = None,
    activation: str = "relu",
) -> dict[str, Any]:
    """The spec of an MLP with ``hidden`` layers on the data set ``info`` describes
    (``image``: the layout's, for heat-map explanations)."""
    from inhouse.models import MLPSpec

    return MLPSpec(
        input_dim=info.n_features,
        hidden=hidden,
        activation=activation,
        num_classes=len(info.class_names),
        feature_names=info.feature_names,
        class_names=info.class_names,
        image=image,
    ).model_dump(exclude_none=True)


def builder_spec(
    settings: Settings,
    info: DatasetInfo,
    options: TrainSettings,
    image: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The spec of the user's module ``options.builder`` on the data set ``info`` describes,
    refused unless an admin allowed its module prefix on this cluster; the module it builds
    must answer logits of the data set's classes."""
    from inhouse.models.builder import (
        BuilderSpec,
        build_user_model,
        check_allowed,
        check_forward,
        parse_kwargs,
    )

    check_allowed(str(options.builder), allowed_prefixes=settings.models.allowed_builder_prefixes)
    spec = BuilderSpec(
        builder=str(options.builder),
        kwargs=parse_kwargs(options.builder_kwargs),
        input_dim=info.n_features,
        num_classes=len(info.class_names),
        feature_names=info.feature_names,
        class_names=info.class_names,
        image=image,
    )
    check_forward(build_user_model(spec), spec)
    return spec.model_dump(exclude_none=True)


class TabularTraining:
    """:class:`inhouse.kinds.training.TrainingKind` for MLPs on rows of numeric features."""

    options_type = TrainSettings

    def options(self, settings: Settings, args: argparse.Namespace) -> TrainSettings:
        """The ``train`` section with the flags given (a bad value names ``train.<field>``)."""
        overrides = section_overrides(args, TrainSettings)
        if not overrides:
            return settings.train
        return load_settings(train=settings.train.model_dump() | overrides).train

    def prepare(
        self, settings: Settings, options: TrainSettings, *, name: str, directory: Path
    ) -> TrainingRun:
        """Build the model spec, reserve the run's privacy spend (or check that a non-DP run
        may read the data set)."""
        from inhouse import services
        from inhouse.data import describe
        from inhouse.kinds.modules import build_model
        from inhouse.kinds.tabular.scaling import pixel_bounds
        from inhouse.kinds.tabular.worker import TabularWorkerConfig
        from inhouse.training import private_run

        engine = services.engine(settings)
        info = describe(engine, options.dataset)
        image = layout_image(engine, options.dataset)
        spec = (
            builder_spec(settings, info, options, image)
            if options.builder
            else mlp_spec(info, options.hidden, image, options.activation)
        )
        privacy = private_run.prepare(
            engine=engine, cfg=options, info=info, run_name=name, num_workers=options.num_workers
        )
        config = TabularWorkerConfig(
            options=options,
            spec=spec,
            db_url=settings.db_url,
            up_to_id=info.last_id,
            privacy=privacy.worker_config(),
            pixels=pixel_bounds(engine, info, bounds_file=options.dp_bounds),
        )
        return TrainingRun(
            name=name,
            directory=directory,
            epochs=options.epochs,
            privacy=privacy,
            model=build_model(spec),
            worker_config=config,
            state={"info": info, "spec": spec},
        )

    def worker(self, config: WorkerConfig, place: WorkerPlace) -> TabularWorker:
        from inhouse.kinds.tabular.worker import TabularWorker

        return TabularWorker(config, place)

    def finish(
        self, settings: Settings, options: TrainSettings, run: TrainingRun, trained: Trained
    ) -> dict[str, Any]:
        from inhouse.kinds.tabular.register import register_run

        return register_run(settings, options, run, trained)

    def summary_lines(self, summary: dict[str, Any]) -> list[str]:
        lines = [
            f"trained {summary['model']} v{summary['version']}: test accuracy "
            f"{summary['test_accuracy']:.4f} in {summary['train_seconds']} s"
        ]
        if summary["compressed"]:
            compressed = summary["compressed"]
            lines.append(f"compressed v{compressed['version']}: {compressed['message']}")
        if summary["served_version"] is not None:
            lines.append(f"champion (served): v{summary['served_version']}")
        lines.append(f"TensorBoard: {summary['tensorboard']}")
        return lines


TRAINING = TabularTraining()
