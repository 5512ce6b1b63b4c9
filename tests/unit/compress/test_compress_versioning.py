"""Compressing a registered version: a new gated version with lineage, and the champion alias."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from sqlalchemy import Engine

from inhouse.compress import compress
from inhouse.config import CompressionSettings, GateSettings
from inhouse.crypto import KeyRing
from inhouse.data import read_rows, seed
from inhouse.errors import InvalidInputError, ModelNotFoundError
from inhouse.kinds import load_module, register_module
from inhouse.kinds.tabular.compression import compress_version, probe_rows
from inhouse.registry import Registry
from inhouse.schema import get_engine
from tests.digits_parent import Parent, train_parent

MODEL = "digits"
# Cheap settings for tests that check the flow, not the target.
QUICK = CompressionSettings(prune_amount=0.5, prune_steps=1, finetune_epochs=1)


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Parent:
    engine = get_engine(f"sqlite:///{tmp_path_factory.mktemp('train') / 'data.db'}")
    seed(engine, "digits")
    trained = train_parent(engine)
    assert trained.test_accuracy >= 0.95
    return trained


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    ring = KeyRing(tmp_path_factory.mktemp("keys"))
    ring.init()
    return ring


@dataclass(frozen=True)
class World:
    registry: Registry
    engine: Engine
    parent_version: int


def _world(tmp_path: Path, parent: Parent, keyring: KeyRing | None) -> World:
    engine = get_engine(f"sqlite:///{tmp_path / 'inhouse.db'}")
    seed(engine, "digits")
    registry = Registry(engine=engine, root=tmp_path / "registry", keyring=keyring)
    info = register_module(
        registry,
        MODEL,
        module=parent.module,
        spec=parent.spec,
        metrics={"test_accuracy": parent.test_accuracy},
        lineage=parent.lineage,
    )
    registry.set_alias(MODEL, "champion", info.version)
    return World(registry, engine, info.version)


@pytest.fixture(params=["plain", "encrypted"])
def world(
    request: pytest.FixtureRequest, tmp_path: Path, parent: Parent, keyring: KeyRing
) -> Iterator[World]:
    yield _world(tmp_path, parent, keyring if request.param == "encrypted" else None)


@pytest.fixture
def plain_world(tmp_path: Path, parent: Parent) -> World:
    return _world(tmp_path, parent, None)


def test_compressed_version_meets_the_target_and_becomes_champion(world: World) -> None:
    summary = compress_version(
        registry=world.registry,
        engine=world.engine,
        model=MODEL,
        settings=CompressionSettings(),
        gate=GateSettings(max_accuracy_drop_points=0.5),
    )
    print(summary["report_markdown"])  # pytest -s shows the measured figures
    markdown = summary["report_markdown"]
    assert summary["gate"] == {"passed": True, "reasons": []}, markdown
    assert summary["size_ratio"] >= 10.0, markdown
    assert summary["accuracy_drop_points"] <= 0.5, markdown
    assert summary["fidelity"] >= 0.4, markdown  # 0.58 measured: 90% pruning reorders them
    assert summary["promoted"] and summary["champion"] == summary["version"]

    new = world.registry.get(MODEL)  # the champion now
    assert new.version == world.parent_version + 1 == summary["version"]
    assert new.format == "compressed"
    assert new.encrypted == (world.registry.keyring is not None)
    assert new.size_bytes == summary["size_bytes"] == new.metrics["size_bytes"]
    parent_info = world.registry.get(MODEL, str(world.parent_version))
    assert summary["size_ratio"] == pytest.approx(parent_info.size_bytes / new.size_bytes)
    assert new.spec == parent_info.spec
    assert new.lineage["parent"] == {"model": MODEL, "version": world.parent_version}
    assert new.lineage["dataset"] == "digits"
    assert new.lineage["rows"] == parent_info.lineage["rows"]
    assert new.lineage["compression"]["prune_amount"] == 0.9
    assert new.lineage["gate"]["passed"] is True
    assert new.metrics["compression_report"]["size_ratio"] == pytest.approx(
        new.metrics["size_ratio"]
    )
    assert set(new.metrics["latency_ms"]) == {
        f"batch={b},threads={t}" for b in (1, 32) for t in (1, 2)
    }
    assert "| size on disk (bytes) |" in markdown and "fidelity" in markdown

    # The served champion is the compressed artifact and scores what the report says.
    engine = world.engine
    test = read_rows(engine, "digits", split="test", up_to_id=new.lineage["rows"]["up_to_id"])
    loaded = load_module(world.registry, new)
    with torch.inference_mode():
        accuracy = float((loaded(test.x).argmax(dim=1) == test.y).float().mean())
    assert accuracy == pytest.approx(summary["test_accuracy"])


def test_a_failed_gate_keeps_the_parent_champion_and_records_why(plain_world: World) -> None:
    summary = compress_version(
        registry=plain_world.registry,
        engine=plain_world.engine,
        model=MODEL,
        ref=str(plain_world.parent_version),
        settings=QUICK,
        gate=GateSettings(min_size_ratio=1000.0),
    )
    assert summary["gate"]["passed"] is False
    assert summary["gate"]["reasons"] and "less than 1000" in summary["gate"]["reasons"][0]
    assert not summary["promoted"]
    assert summary["champion"] == plain_world.parent_version
    assert "stays champion" in summary["message"] and "gate failed" in summary["report_markdown"]
    assert plain_world.registry.get(MODEL).version == plain_world.parent_version
    failed = plain_world.registry.get(MODEL, str(summary["version"]))
    assert failed.metrics["gate_passed"] is False
    assert failed.metrics["gate_reasons"] == summary["gate"]["reasons"]
    assert failed.lineage["gate"]["reasons"] == summary["gate"]["reasons"]


def test_the_default_gate_refuses_a_deliberately_over_pruned_model(plain_world: World) -> None:
    summary = compress_version(
        registry=plain_world.registry,
        engine=plain_world.engine,
        model=MODEL,
        ref=str(plain_world.parent_version),
        settings=CompressionSettings(prune_amount=0.99, prune_steps=1, finetune_epochs=0),
        gate=GateSettings(),  # accuracy may drop at most 0.5 points
    )
    assert summary["accuracy_drop_points"] > 0.5
    assert summary["gate"]["passed"] is False and "accuracy drops" in summary["gate"]["reasons"][0]
    assert plain_world.registry.get(MODEL).version == plain_world.parent_version  # still served


def test_no_promote_registers_without_moving_the_champion(plain_world: World) -> None:
    summary = compress_version(
        registry=plain_world.registry,
        engine=plain_world.engine,
        model=MODEL,
        settings=CompressionSettings(prune_amount=0.0),  # int8 only
        gate=GateSettings(max_accuracy_drop_points=100.0),
        promote=False,
    )
    assert summary["gate"]["passed"] and not summary["promoted"]
    assert summary["fidelity"] >= 0.95  # int8 alone barely moves the explanations
    assert plain_world.registry.aliases(MODEL) == {"champion": plain_world.parent_version}


def test_a_compressed_version_is_not_compressed_again(plain_world: World, parent: Parent) -> None:
    registry = plain_world.registry
    int8_only = compress(parent.module, CompressionSettings(prune_amount=0.0))
    done = register_module(
        registry,
        MODEL,
        module=int8_only,
        spec=parent.spec,
        metrics={},
        lineage={**parent.lineage, "parent": {"model": MODEL, "version": 1}},
        fmt="compressed",
    )
    registry.set_alias(MODEL, "champion", done.version)
    with pytest.raises(InvalidInputError, match="already compressed"):
        compress_version(
            registry=registry,
            engine=plain_world.engine,
            model=MODEL,
            settings=QUICK,
            gate=GateSettings(),
        )
    assert [v.version for v in registry.versions(MODEL)] == [1, 2]


@pytest.mark.parametrize(
    ("model", "ref"), [("nosuch", "champion"), (MODEL, "7"), (MODEL, "canary")]
)
def test_unknown_model_or_version_is_a_clear_error(
    plain_world: World, model: str, ref: str
) -> None:
    with pytest.raises(ModelNotFoundError, match="cannot compress"):
        compress_version(
            registry=plain_world.registry,
            engine=plain_world.engine,
            model=model,
            ref=ref,
            settings=QUICK,
            gate=GateSettings(),
        )


def test_a_parent_without_data_set_lineage_is_refused(plain_world: World, parent: Parent) -> None:
    info = register_module(
        plain_world.registry,
        MODEL,
        module=parent.module,
        spec=parent.spec,
        metrics={},
        lineage={"parent": None},
    )
    with pytest.raises(InvalidInputError, match="no data set"):
        compress_version(
            registry=plain_world.registry,
            engine=plain_world.engine,
            model=MODEL,
            ref=str(info.version),
            settings=QUICK,
            gate=GateSettings(),
        )


def test_the_probe_set_is_fixed_and_bounded() -> None:
    rows = torch.arange(360.0).reshape(360, 1)
    probe = probe_rows(rows)
    assert probe.shape == (64, 1) and torch.equal(probe, probe_rows(rows))
    assert probe[0, 0] == 0 and probe[-1, 0] == 359
    assert torch.equal(probe_rows(rows[:10]), rows[:10])
