"""Model builders: a spec (JSON-serialisable) in, a ``torch.nn.Module`` out."""

from __future__ import annotations

from typing import Any

from torch import nn

from inhouse.kinds.registry import kind_for_spec
from inhouse.models.mlp import MLPSpec, Standardize, build_mlp


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a module from the spec stored in a version's lineage (its kind builds it)."""
    return kind_for_spec(spec).build(spec)


__all__ = ["MLPSpec", "Standardize", "build_mlp", "build_model"]
