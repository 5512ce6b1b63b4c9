"""Helpers of the reliability suite: a tiny digits-shaped model and registering it."""

from __future__ import annotations

import torch

from inhouse.kinds import build_model, register_module
from inhouse.models import MLPSpec
from inhouse.registry import Registry

SPEC = MLPSpec(input_dim=64, hidden=[32], num_classes=10).model_dump()


def tiny_model(seed: int = 0, spec: dict[str, object] | None = None) -> torch.nn.Module:
    """An untrained MLP (default: 64 inputs, 10 classes), deterministic per ``seed``."""
    torch.manual_seed(seed)
    return build_model(spec or SPEC).eval()


def register(
    registry: Registry, model: str = "digits", seed: int = 0, fmt: str = "safetensors"
) -> int:
    """Register ``tiny_model(seed)`` under ``model``; returns the version number."""
    module = tiny_model(seed)
    if fmt == "compressed":
        from inhouse.compress import compress
        from inhouse.config import CompressionSettings

        module = compress(module, CompressionSettings())
    info = register_module(
        registry,
        model,
        module=module,
        spec=SPEC,
        metrics={},
        lineage={"dataset": "digits"},
        fmt=fmt,
    )
    return info.version
