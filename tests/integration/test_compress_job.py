"""The compression job on the shared cluster: a Ray task compresses the champion and replaces it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from inhouse import services
from inhouse.compress import CompressionSettings, GateSettings
from inhouse.config import Settings, load_settings
from inhouse.data import describe, read_rows, seed
from inhouse.models import MLPSpec, Standardize, build_mlp
from inhouse.training import evaluate, train_one_epoch
from jobs import compress

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "digits_compressed_job"


def _register_parent(settings: Settings) -> int:
    """Train the spec's MLP in-process (Adam 3e-3, 10 epochs, batch 32); register as champion."""
    engine = services.engine(settings)
    seed(engine, "digits")
    info = describe(engine, "digits")
    train = read_rows(engine, "digits", split="train", up_to_id=info.last_id)
    test = read_rows(engine, "digits", split="test", up_to_id=info.last_id)
    mlp = MLPSpec(
        input_dim=info.n_features,
        num_classes=len(info.class_names),
        feature_names=info.feature_names,
        class_names=info.class_names,
    )
    spec = mlp.model_dump()
    torch.manual_seed(0)
    model = build_mlp(mlp)
    standardize = model[0]
    assert isinstance(standardize, Standardize)
    standardize.fit(train.x)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loader = DataLoader(
        TensorDataset(train.x, train.y),
        batch_size=32,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    for _ in range(10):
        train_one_epoch(model, loader, optimizer)
    accuracy = evaluate(model, test.x, test.y).accuracy
    assert accuracy >= 0.95
    registry = services.registry(settings)
    version = registry.register(
        MODEL,
        module=model,
        spec=spec,
        metrics={"test_accuracy": accuracy},
        lineage={
            "dataset": "digits",
            "rows": {"first_id": info.first_id, "up_to_id": info.last_id},
            "parent": None,
        },
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
    loaded = registry.load_module(champion)  # what serving loads by default now
    test = read_rows(services.engine(settings), "digits", split="test")
    with torch.inference_mode():
        accuracy = float((loaded(test.x).argmax(dim=1) == test.y).float().mean())
    assert accuracy == pytest.approx(summary["test_accuracy"])
