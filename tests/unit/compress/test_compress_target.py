"""The issue's target on the Digits MLP: >= 10x smaller on disk, <= 0.5 accuracy points lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inhouse.compress import (
    Int8Linear,
    artifact_size,
    compare,
    count_parameters,
    float32_size,
    gate,
    load_compressed,
    save_compressed,
)
from inhouse.config import GateSettings


def test_target_size_and_accuracy(
    parent: nn.Module, compressed: nn.Module, digits: Any, tmp_path: Path
) -> None:
    written = save_compressed(compressed, tmp_path / "digits-compressed")
    report = compare(
        parent,
        compressed,
        digits.x_test,
        digits.y_test,
        compressed_size_bytes=artifact_size(tmp_path / "digits-compressed"),
        repeats=3,
    )
    assert report.compressed.size_bytes == written
    assert report.parent.size_bytes == float32_size(parent)
    assert report.size_ratio >= 10.0, report.to_markdown()
    assert report.accuracy_drop_points <= 0.5, report.to_markdown()
    assert gate(report, GateSettings(max_accuracy_drop_points=0.5, min_size_ratio=10.0)) == (
        True,
        [],
    )
    assert set(report.parent.latency_ms) == {
        f"batch={b},threads={t}" for b in (1, 32) for t in (1, 2)
    }
    assert json.loads(report.to_json())["size_ratio"] == report.size_ratio
    assert "| size on disk (bytes) |" in report.to_markdown()


def test_sparsity_applied_and_permanent(parent: nn.Module, compressed: nn.Module) -> None:
    names = [name for name, _ in compressed.named_parameters()]
    names += [name for name, _ in compressed.named_buffers()]
    assert not [name for name in names if name.endswith(("_orig", "_mask"))]
    assert all(not layer._forward_pre_hooks for layer in compressed.modules())
    int8 = [layer for layer in compressed.modules() if isinstance(layer, Int8Linear)]
    assert len(int8) == 3
    total = sum(layer.qweight.numel() for layer in int8)
    zeros = sum(int((layer.qweight == 0).sum()) for layer in int8)
    assert zeros / total >= 0.9
    # the parent is left untouched
    assert count_parameters(parent) == (8970, 8970)
    assert count_parameters(compressed)[1] <= 0.1 * 8960 + 138


def test_loaded_artifact_serves_like_the_compressed_module(
    compressed: nn.Module, digits: Any, tmp_path: Path
) -> None:
    save_compressed(compressed, tmp_path / "a")
    loaded = load_compressed(tmp_path / "a")
    assert not loaded.training
    with torch.inference_mode():
        assert torch.equal(loaded(digits.x_test), compressed(digits.x_test))
    assert [type(m) for m in loaded.modules()] == [type(m) for m in compressed.modules()]
