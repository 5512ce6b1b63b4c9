"""The module of a text version: a Hugging Face encoder (with its head, or an adapter's
tensors) rebuilt from its spec (weights load after)."""

from __future__ import annotations

from typing import Any

from torch import nn

from inhouse.models.text import build_text_model


def build(spec: dict[str, Any]) -> nn.Module:
    """The (randomly initialised) module an ``hf_text`` spec describes."""
    return build_text_model(spec)
