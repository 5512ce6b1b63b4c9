"""A home with the seeded digits data set and a compressed champion, for coordinator tests;
and the stream rows they append (noisy copies of training rows, or label-shuffled ones)."""

from __future__ import annotations

import time

from sqlalchemy import Engine

from inhouse import services
from inhouse.config import CompressionSettings, GateSettings, Settings
from inhouse.data import read_rows, seed
from inhouse.data.simulate import append_noisy_copies
from inhouse.explain.lineage import importance_lineage
from inhouse.kinds import register_module
from inhouse.kinds.tabular.compression import compress_version
from tests.digits_parent import Parent, train_parent

QUICK = CompressionSettings(prune_amount=0.5, prune_steps=1, finetune_epochs=1)


def make_champion(settings: Settings, model: str = "digits", parent: Parent | None = None) -> int:
    """Seed ``digits``, register the trained parent with its global importance, compress it;
    returns the champion (compressed) version."""
    engine = services.engine(settings)
    registry = services.registry(settings)
    seed(engine, "digits")
    parent = parent or train_parent(engine)
    train = read_rows(engine, "digits", split="train")
    lineage = {
        **parent.lineage,
        **importance_lineage(
            parent.module,
            train.x,
            feature_names=parent.spec["feature_names"],
            champion_lineage=None,
        ),
    }
    version = register_module(
        registry,
        model,
        module=parent.module,
        spec=parent.spec,
        metrics={"test_accuracy": parent.test_accuracy},
        lineage=lineage,
    )
    registry.set_alias(model, "champion", version.version)
    result = compress_version(
        registry=registry, engine=engine, model=model, settings=QUICK, gate=GateSettings()
    )
    if not result["promoted"]:
        raise RuntimeError(f"the test champion did not pass compression: {result['message']}")
    return int(result["version"])


def append_stream(engine: Engine, count: int, *, seed_: int = 1, shuffle: bool = False) -> int:
    """Append ``count`` noisy copies of the seeded training rows (labels always wrong if
    ``shuffle``); returns the last new row id."""
    _first, last = append_noisy_copies(
        engine, "digits", count, seed=seed_, source_up_to_id=1797, wrong_labels=shuffle
    )
    return last


def kill_coordinator(model: str) -> None:
    """Kill the coordinator actor of ``model`` for good, if one runs (test teardown)."""
    import ray

    from inhouse.actors.coordinator import find_actor

    actor = find_actor(model)
    if actor is not None:
        ray.kill(actor, no_restart=True)
        deadline = time.monotonic() + 30
        while find_actor(model) is not None and time.monotonic() < deadline:
            time.sleep(0.2)  # gone, so it no longer holds database locks
