"""A home with the seeded digits data set and a compressed champion, for coordinator tests;
and the stream rows they append (noisy copies of training rows, or label-shuffled ones)."""

from __future__ import annotations

import torch
from sqlalchemy import Engine

from inhouse import services
from inhouse.compress import CompressionSettings, GateSettings
from inhouse.compress.versioning import compress_version
from inhouse.config import Settings
from inhouse.data import append_rows, read_rows, seed
from inhouse.explain.lineage import importance_lineage
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
    version = registry.register(
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
    """Append ``count`` noisy copies of training rows (labels shuffled if asked); last id."""
    train = read_rows(engine, "digits", split="train", up_to_id=1797)
    generator = torch.Generator().manual_seed(seed_)
    index = torch.randint(0, len(train), (count,), generator=generator)
    x = (train.x[index] + torch.randn(count, train.x.shape[1], generator=generator)).clamp(0, 16)
    y = train.y[index]
    if shuffle:
        y = (y + torch.randint(1, 10, (count,), generator=generator)) % 10  # always wrong
    _first, last = append_rows(engine, "digits", features=x.tolist(), labels=y.tolist())
    return last
