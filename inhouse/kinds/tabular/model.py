"""The module of a tabular version: an MLP rebuilt from its spec (weights load after)."""

from __future__ import annotations

from typing import Any

from torch import nn

from inhouse.models.mlp import MLPSpec, build_mlp


def build(spec: dict[str, Any]) -> nn.Module:
    """The (randomly initialised) MLP an ``mlp`` spec describes."""
    return build_mlp(MLPSpec.model_validate(spec))
