"""Issue #16, High 1: compression must not walk around the privacy ledger.

The attack: with a budget on the data set (so non-DP training is refused), ``inhouse compress``
pruned and fine-tuned a DP champion on the raw training rows without noise, copied the
parent's ``privacy: {dp: true, epsilon}`` into the new version's lineage and promoted it,
while the ledger showed no charge and no non-DP run. Now a fine-tune of a DP parent is
refused before a training row is read, a quantization-only child carries the parent's
(paid-for) guarantee, and a fine-tune of a non-DP parent is admitted by the ledger like
non-DP training.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy import Engine

import inhouse.cli.jobs_cmd as commands
import inhouse.kinds.tabular.compression as versioning
from inhouse.compress.admission import flags_finetune, parent_privacy
from inhouse.config import CompressionSettings, GateSettings
from inhouse.data import read_rows, seed
from inhouse.errors import InvalidInputError, PermissionDeniedError
from inhouse.kinds import register_module
from inhouse.kinds.tabular.compression import compress_version
from inhouse.privacy import Mechanism, PrivacyLedger
from inhouse.registry import Registry
from inhouse.schema import get_engine
from tests.digits_parent import Parent, train_parent

MODEL = "digits"
# The attack's settings, made cheap: prune and fine-tune on the training rows.
FINETUNE = CompressionSettings(prune_amount=0.5, prune_steps=1, finetune_epochs=1)
INT8_ONLY = CompressionSettings(prune_amount=0.0, finetune_epochs=0)
PRUNE_ONLY = CompressionSettings(prune_amount=0.5, prune_steps=1, finetune_epochs=0)
GATE = GateSettings(max_accuracy_drop_points=100.0)  # these tests are about the ledger


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Parent:
    engine = get_engine(f"sqlite:///{tmp_path_factory.mktemp('train') / 'data.db'}")
    seed(engine, "digits")
    return train_parent(engine)


@dataclass(frozen=True)
class World:
    registry: Registry
    engine: Engine
    ledger: PrivacyLedger
    parent_version: int
    train_reads: list[str]


def _world(tmp_path: Path, parent: Parent, monkeypatch: pytest.MonkeyPatch, *, dp: bool) -> World:
    engine = get_engine(f"sqlite:///{tmp_path / 'inhouse.db'}")
    seed(engine, "digits")
    ledger = PrivacyLedger(engine)
    ledger.set_budget(dataset="digits", epsilon=10.0, delta=1e-5, actor="admin")
    lineage = dict(parent.lineage)
    if dp:  # the parent's DP run, charged to the ledger like jobs/train.py charges it
        rows = lineage["rows"]
        charge = ledger.reserve(
            dataset="digits",
            first_id=rows["first_id"],
            up_to_id=rows["up_to_id"],
            mechanism=Mechanism(1.1, 0.05, 120),
            accountant="rdp",
            clipping=1.0,
            model=MODEL,
            run="train-digits-dp",
        )
        charge = ledger.settle(charge.id, steps=120, version=1)
        lineage["privacy"] = {"dp": True, **charge.lineage()}
    else:
        lineage["privacy"] = {"dp": False}
    registry = Registry(engine=engine, root=tmp_path / "registry", keyring=None)
    info = register_module(
        registry, MODEL, module=parent.module, spec=parent.spec, metrics={}, lineage=lineage
    )
    registry.set_alias(MODEL, "champion", info.version)

    reads: list[str] = []

    def spy(engine: Engine, dataset: str, *, split: str | None = None, **kw: Any) -> Any:
        if split != "test":
            reads.append(str(split))
        return read_rows(engine, dataset, split=split, **kw)

    monkeypatch.setattr(versioning, "read_rows", spy)
    return World(registry, engine, ledger, info.version, reads)


def _compress(world: World, settings: CompressionSettings) -> dict[str, Any]:
    return compress_version(
        registry=world.registry,
        engine=world.engine,
        model=MODEL,
        settings=settings,
        gate=GATE,
    )


def _ledger_counts(world: World) -> tuple[int, int]:
    [report] = world.ledger.report("digits")
    return len(report.charges), len(report.non_dp_runs)


def _unchanged(world: World) -> None:
    assert world.registry.versions(MODEL)[-1].version == world.parent_version
    assert world.registry.aliases(MODEL)["champion"] == world.parent_version
    assert world.train_reads == []  # refused before a training row was read


def test_finetuning_a_dp_parent_is_refused_before_reading_a_row(
    tmp_path: Path, parent: Parent, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _world(tmp_path, parent, monkeypatch, dp=True)
    with pytest.raises(InvalidInputError, match="--finetune-epochs 0") as caught:
        _compress(world, FINETUNE)
    assert "differentially private" in caught.value.message and "\n" not in caught.value.message
    _unchanged(world)
    assert _ledger_counts(world) == (1, 0)


def test_an_exemption_for_non_dp_training_does_not_unlock_a_dp_parent(
    tmp_path: Path, parent: Parent, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _world(tmp_path, parent, monkeypatch, dp=True)
    world.ledger.allow_non_dp(dataset="digits", actor="admin", reason="benchmark")
    with pytest.raises(InvalidInputError, match="without noise"):
        _compress(world, FINETUNE)
    _unchanged(world)
    assert _ledger_counts(world) == (1, 0)


@pytest.mark.parametrize("settings", [INT8_ONLY, PRUNE_ONLY], ids=["int8", "prune-no-finetune"])
def test_a_dp_parent_compressed_without_rows_keeps_the_guarantee_it_paid_for(
    tmp_path: Path,
    parent: Parent,
    monkeypatch: pytest.MonkeyPatch,
    settings: CompressionSettings,
) -> None:
    world = _world(tmp_path, parent, monkeypatch, dp=True)
    summary = _compress(world, settings)
    child = world.registry.get(MODEL, str(summary["version"]))
    paid = world.registry.get(MODEL, str(world.parent_version)).lineage["privacy"]
    assert child.format == "compressed"
    assert child.lineage["privacy"] == paid and paid["dp"] is True  # post-processing
    assert world.ledger.charge(paid["charge_id"]).status == "committed"
    assert world.train_reads == []  # weights alone: no training row read
    assert _ledger_counts(world) == (1, 0)


def test_finetuning_a_non_dp_parent_on_a_budgeted_data_set_needs_the_exemption(
    tmp_path: Path, parent: Parent, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _world(tmp_path, parent, monkeypatch, dp=False)
    with pytest.raises(PermissionDeniedError, match="allow-non-dp"):
        _compress(world, FINETUNE)
    _unchanged(world)
    assert _ledger_counts(world) == (0, 0)


def test_an_admitted_non_dp_finetune_is_recorded_and_claims_no_privacy(
    tmp_path: Path, parent: Parent, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _world(tmp_path, parent, monkeypatch, dp=False)
    world.ledger.allow_non_dp(dataset="digits", actor="admin", reason="benchmark")
    summary = _compress(world, FINETUNE)
    child = world.registry.get(MODEL, str(summary["version"]))
    privacy = child.lineage["privacy"]
    assert privacy["dp"] is False and "epsilon" not in privacy
    assert world.train_reads == ["train"]
    [report] = world.ledger.report("digits")
    [run] = report.non_dp_runs
    assert (run.model, run.run, run.reason) == (MODEL, privacy["run"], "benchmark")
    assert report.charges == []


def test_a_parent_without_privacy_lineage_claims_none() -> None:
    assert parent_privacy({"dataset": "digits"}) == {"dp": False}
    assert parent_privacy({"privacy": {"dp": True, "epsilon": 1.0}})["epsilon"] == 1.0


def test_the_compress_command_needs_train_submit_when_it_finetunes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str] = []
    monkeypatch.setattr(
        commands, "authorize", lambda _s, *, action, resource, detail="": asked.append(action)
    )
    summary = {"report_markdown": "", "model": MODEL, "version": 2, "parent_version": 1}
    monkeypatch.setattr(commands, "run_job", lambda *_a, **_k: summary | {"message": "ok"})

    def args(**flags: Any) -> argparse.Namespace:
        base: dict[str, Any] = {"model": MODEL, "version": "champion", "prune": None}
        base |= {"prune_steps": None, "quantize": None, "finetune_epochs": None}
        base |= {"max_accuracy_drop": None, "max_perplexity_increase": None}
        base |= {"min_size_ratio": None, "structured": None}
        return argparse.Namespace(**(base | {"promote": True} | flags))

    settings: Any = object()
    assert commands.cmd_compress(settings, args()) == 0  # defaults prune and fine-tune
    assert asked == ["model:deploy", "train:submit"]
    for flags in ({"prune": 0.0}, {"finetune_epochs": 0}):
        asked.clear()
        assert commands.cmd_compress(settings, args(**flags)) == 0
        assert asked == ["model:deploy"]
    assert flags_finetune(prune_amount=None, finetune_epochs=None)
    assert not flags_finetune(prune_amount=0.9, finetune_epochs=0)
