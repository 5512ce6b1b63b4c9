"""Text fine-tuning as a Ray Train DDP job: a tiny BERT learns three intents, is registered with
its int8 version, and a LoRA retrain registers a small adapter against it."""

from __future__ import annotations

from pathlib import Path

import pytest

from inhouse import services
from inhouse.config import Settings, TextTrainOptions
from inhouse.data.text_import import import_text_csv
from inhouse.errors import ConfigError
from inhouse.jobs import train
from tests.hf_tiny import make_rows, make_tiny_bert, write_csv

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _dataset(settings: Settings, tmp_path: Path, name: str) -> None:
    import_text_csv(
        services.engine(settings),
        name=name,
        csv_path=write_csv(tmp_path / "train.csv", make_rows(300)),
        test_csv=write_csv(tmp_path / "test.csv", make_rows(60, seed=9)),
        label_column="category",
    )


def test_ddp_fine_tune_registers_float_and_int8_then_a_lora_adapter(
    ray_cluster: Settings, tmp_path: Path
) -> None:
    _dataset(ray_cluster, tmp_path, "intents_ddp")
    common = {
        "dataset": "intents_ddp",
        "model": "intents-ddp",
        "lr": 2e-3,
        "batch_size": 8,
        "max_length": 16,
        "num_workers": 2,
        "threads_per_worker": 1,
    }
    tiny = make_tiny_bert(tmp_path / "tiny")
    summary = train.run(ray_cluster, TextTrainOptions(model_dir=str(tiny), epochs=5, **common))
    assert summary["backend"] == "gloo" and summary["amp"] == "off"
    assert summary["test_accuracy"] >= 0.9
    registry = services.registry(ray_cluster)
    fp32 = registry.get("intents-ddp", str(summary["version"]))
    int8 = registry.get("intents-ddp", str(summary["compressed"]["version"]))
    assert fp32.spec["role"] == "classifier" and fp32.encrypted
    assert int8.format == "compressed" and int8.lineage["parent"]["version"] == fp32.version
    assert int8.size_bytes < fp32.size_bytes
    assert summary["compressed"]["gate_passed"] is (
        summary["compressed"]["accuracy_drop_points"] <= 0.5
    )
    assert registry.get("intents-ddp").version == summary["served_version"]
    assert list(ray_cluster.runs_dir.rglob("model.safetensors.enc"))  # sealed checkpoints

    lora = train.run(
        ray_cluster,
        TextTrainOptions(
            base="intents-ddp", method="lora", epochs=1, **common | {"model": "intents-team-a"}
        ),
    )
    adapter = registry.get("intents-team-a")
    assert adapter.version == lora["version"] and adapter.spec["role"] == "adapter"
    assert adapter.lineage["base"] == {"model": "intents-ddp", "version": fp32.version}
    assert adapter.metrics["trainable_fraction"] < 0.5
    assert lora["test_accuracy"] >= 0.85


def test_bad_starts_and_dp_are_refused_before_any_worker(
    ray_cluster: Settings, tmp_path: Path
) -> None:
    _dataset(ray_cluster, tmp_path, "intents_refuse")
    with pytest.raises(ValueError, match="exactly one of --model-dir and --base"):
        TextTrainOptions(dataset="intents_refuse", model="x")
    with pytest.raises(ValueError, match="import the directory first"):
        TextTrainOptions(dataset="intents_refuse", model="x", model_dir="/m", method="lora")
    tiny = make_tiny_bert(tmp_path / "tiny")
    options = TextTrainOptions(dataset="intents_refuse", model="x", model_dir=str(tiny), dp=True)
    with pytest.raises(ConfigError, match="--dp is not available for --method full"):
        train.run(ray_cluster, options)
