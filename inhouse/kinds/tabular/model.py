"""The module of a tabular version, rebuilt from its spec (weights load after): the built-in
MLP (``mlp``) or the user's own module from an allowed builder (``torch_module``,
:mod:`inhouse.models.builder`)."""

from __future__ import annotations

from typing import Any

from torch import nn

from inhouse.models.builder import BUILDER_ARCH, BuilderSpec, build_user_model
from inhouse.models.mlp import MLPSpec, build_mlp


def build(spec: dict[str, Any]) -> nn.Sequential:
    """The (randomly initialised) module an ``mlp`` or ``torch_module`` spec describes."""
    if spec.get("kind") == BUILDER_ARCH:
        return build_user_model(BuilderSpec.model_validate(spec))
    return build_mlp(MLPSpec.model_validate(spec))
