"""The compression job on the shared cluster: a Ray task compresses the champion and replaces it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inhouse import services
from inhouse.config import CompressionSettings, GateSettings, Settings, load_settings
from inhouse.data import read_rows, seed
from inhouse.jobs import compress
from inhouse.kinds import load_module, register_module
from tests.digits_parent import train_parent

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "digits_compressed_job"


def _register_parent(settings: Settings) -> int:
    """Train the spec's MLP in-process and register it as champion."""
    engine = services.engine(settings)
    seed(engine, "digits")
    parent = train_parent(engine)
    assert parent.test_accuracy >= 0.95
    registry = services.registry(settings)
    version = register_module(
        registry,
        MODEL,
        module=parent.module,
        spec=parent.spec,
        metrics={"test_accuracy": parent.test_accuracy},
        lineage=parent.lineage,
    )
    registry.set_alias(MODEL, "champion", version.version)
    return version.version


def test_the_job_compresses_the_champion_on_the_cluster(
    ray_cluster: Settings, tmp_path: Path
) -> None:
    # Own database (the cluster's home, so the same key ring and registry directory).
    settings = load_settings(
        home=str(ray_cluster.home), database_url=f"sqlite:///{tmp_path / 'compress.db'}"
    )
    parent_version = _register_parent(settings)

    summary = compress.run(
        settings,
        model=MODEL,
        ref="champion",
        compression=CompressionSettings(prune_amount=0.9, quantize="int8"),
        gate=GateSettings(max_accuracy_drop_points=0.5),
        promote=True,
    )

    assert summary["parent_version"] == parent_version
    assert summary["version"] == parent_version + 1
    assert summary["gate"] == {"passed": True, "reasons": []}, summary["report_markdown"]
    assert summary["promoted"] and summary["champion"] == summary["version"]
    assert summary["size_ratio"] >= 10.0, summary["report_markdown"]
    assert summary["accuracy_drop_points"] <= 0.5, summary["report_markdown"]
    assert -1.0 <= summary["fidelity"] <= 1.0
    assert "| size on disk (bytes) |" in summary["report_markdown"]

    registry = services.registry(settings)
    champion = registry.get(MODEL)
    assert champion.version == summary["version"] and champion.format == "compressed"
    assert champion.encrypted == settings.security.encrypt_at_rest
    assert champion.lineage["parent"] == {"model": MODEL, "version": parent_version}
    assert champion.metrics["size_ratio"] == pytest.approx(summary["size_ratio"])
    loaded = load_module(registry, champion)  # what serving loads by default now
    test = read_rows(services.engine(settings), "digits", split="test")
    with torch.inference_mode():
        accuracy = float((loaded(test.x).argmax(dim=1) == test.y).float().mean())
    assert accuracy == pytest.approx(summary["test_accuracy"])


def test_the_job_quantizes_a_generative_model_gated_on_perplexity(
    ray_cluster: Settings, tmp_path: Path
) -> None:
    """The same job, an ``llm`` version: its kind (found from the spec) quantizes it to int8,
    gates on held-out perplexity and promotes the copy."""
    from inhouse.kinds import kind_named
    from tests.llm_fixtures import tiny_llm_dir

    settings = load_settings(
        home=str(ray_cluster.home), database_url=f"sqlite:///{tmp_path / 'llm.db'}"
    )
    importing = kind_named("llm").importing
    registry = services.registry(settings)
    parent = importing.import_model(
        settings,
        registry,
        tiny_llm_dir(tmp_path / "tiny"),
        name="tiny_llm_job",
        options=importing.options_type(),
    )
    assert registry.get("tiny_llm_job").version == parent.version  # the first is champion

    summary = compress.run(
        settings,
        model="tiny_llm_job",
        compression=CompressionSettings(quantize="int8"),
        gate=GateSettings(max_perplexity_increase=0.05),
    )

    assert summary["parent_version"] == parent.version
    assert summary["gate"]["passed"] and summary["promoted"], summary["report_markdown"]
    assert summary["size_ratio"] >= 2.0 and summary["perplexity_increase"] <= 0.05
    champion = registry.get("tiny_llm_job")
    assert champion.version == summary["version"] and champion.spec["role"] == "int8"
    assert champion.lineage["parent"] == {"model": "tiny_llm_job", "version": parent.version}
