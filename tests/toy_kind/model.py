"""The toy module: logits ``scale * (len - threshold) * [-1, 1]`` over text lengths."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

SPEC = {"kind": "toy_arch", "threshold": 10, "class_names": ["short", "long"]}


class LengthThreshold(nn.Module):
    """Class "long" when a text has more than ``threshold`` characters."""

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, lengths: torch.Tensor) -> torch.Tensor:
        margin = self.scale * (lengths.float() - self.threshold)
        return torch.stack([-margin, margin], dim=1)


def build(spec: dict[str, Any]) -> nn.Module:
    """The module a ``toy_arch`` spec describes."""
    return LengthThreshold(int(spec["threshold"]))
