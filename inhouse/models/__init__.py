"""Model builders: a spec (JSON-serialisable) in, a ``torch.nn.Module`` out."""

from __future__ import annotations

from typing import Any

from torch import nn

from inhouse.errors import InvalidInputError
from inhouse.models.mlp import MLPSpec, Standardize, build_mlp


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a module from the spec stored in a version's lineage."""
    kind = spec.get("kind")
    if kind == "mlp":
        return build_mlp(MLPSpec.model_validate(spec))
    if kind == "hf_text":
        from inhouse.models.text import build_text_model  # transformers only when needed

        return build_text_model(spec)
    raise InvalidInputError(f"unknown model kind {kind!r}")


__all__ = ["MLPSpec", "Standardize", "build_mlp", "build_model"]
