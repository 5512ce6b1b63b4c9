"""Model builders: a spec (JSON-serialisable) in, a ``torch.nn.Module`` out."""

from __future__ import annotations

from typing import Any

from torch import nn

from inhouse.errors import InvalidInputError
from inhouse.models.mlp import MLP_ARCH, MLPSpec, Standardize, build_mlp
from inhouse.models.text import TEXT_ARCH


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a module from the spec stored in a version's lineage (its architecture)."""
    arch = spec.get("kind")
    if arch == MLP_ARCH:
        return build_mlp(MLPSpec.model_validate(spec))
    if arch == TEXT_ARCH:
        from inhouse.models.text import build_text_model  # transformers only when needed

        return build_text_model(spec)
    raise InvalidInputError(f"unknown model architecture {arch!r}")


__all__ = ["MLPSpec", "Standardize", "build_mlp", "build_model"]
