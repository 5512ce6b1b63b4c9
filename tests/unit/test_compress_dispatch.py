"""``inhouse compress`` reaches the kind of the version's spec (``compress_model``, what the
job's Ray task runs, called here without Ray): the tabular MLP, a kind registered in a test,
and a clear refusal for a kind without a compressing part."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from inhouse.config import CompressionSettings, GateSettings
from inhouse.data import seed
from inhouse.errors import InvalidInputError, ModelNotFoundError
from inhouse.jobs.compress import compress_model
from inhouse.kinds import ModelKind, load_module, register, register_module, unregister
from inhouse.kinds.text.versions import import_model_dir
from inhouse.registry import Registry
from inhouse.schema import get_engine
from tests.digits_parent import train_parent
from tests.hf_tiny import make_tiny_bert
from tests.toy_kind.model import SPEC, build

QUICK = CompressionSettings(prune_amount=0.5, prune_steps=1, finetune_epochs=1)


@pytest.fixture
def toy() -> Iterator[None]:
    register(ModelKind("toy", ("toy_arch",), "tests.toy_kind"))
    try:
        yield
    finally:
        unregister("toy")


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(engine=get_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"), root=tmp_path / "r")


def _compress(registry: Registry, model: str) -> dict[str, object]:
    return compress_model(
        registry=registry,
        engine=registry.engine,
        model=model,
        ref="latest",
        settings=QUICK,
        gate=GateSettings(max_accuracy_drop_points=100.0),
        promote=True,
    )


def test_a_tabular_version_is_pruned_and_quantized_by_its_kind(registry: Registry) -> None:
    seed(registry.engine, "digits")
    parent = train_parent(registry.engine)
    info = register_module(
        registry,
        "digits",
        module=parent.module,
        spec=parent.spec,
        metrics={"test_accuracy": parent.test_accuracy},
        lineage=parent.lineage,
    )
    summary = _compress(registry, "digits")
    assert (summary["parent_version"], summary["version"]) == (info.version, info.version + 1)
    assert registry.get("digits", "latest").format == "compressed"


def test_a_registered_kind_with_a_compressing_part_is_reached(
    toy: None, registry: Registry
) -> None:
    module = build(SPEC)
    with torch.no_grad():
        module.scale.fill_(2.4)
    register_module(registry, "lengths", module=module, spec=SPEC, metrics={}, lineage={})
    summary = _compress(registry, "lengths")
    assert summary["report_markdown"] == "prune 0.5" and summary["version"] == 2
    copy = load_module(registry, registry.get("lengths", "champion"))
    assert float(copy.scale.detach()) == 2.0


def test_a_kind_without_one_and_a_missing_model_are_clear_errors(
    toy: None, registry: Registry, tmp_path: Path
) -> None:
    import_model_dir(registry, make_tiny_bert(tmp_path / "tiny"), name="tiny-bert", max_length=16)
    with pytest.raises(InvalidInputError) as refused:
        _compress(registry, "tiny-bert")
    assert refused.value.message == (
        "models of kind 'text' cannot be compressed here; kinds that can: llm, tabular, toy"
    )
    assert [v.version for v in registry.versions("tiny-bert")] == [1]
    with pytest.raises(ModelNotFoundError, match="cannot compress: "):
        _compress(registry, "nope")
