"""The tabular classifier: standardisation built in, then a ReLU MLP.

Standardisation lives inside the module (``mean``/``std`` buffers saved with the weights),
so clients send raw feature values and every layer (serving, explanation, compression)
sees the same function.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from inhouse.config.training import Activation  # tanh suits DP-SGD (docs/privacy.md)

MLP_ARCH = "mlp"  # the architecture (``spec["kind"]``) of every tabular version
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


class ImageSize(BaseModel):
    """Height and width of an image data set's row-major pixels (its layout's ``image``)."""

    model_config = ConfigDict(extra="forbid")

    height: int = Field(ge=1, le=100_000)
    width: int = Field(ge=1, le=100_000)


class MLPSpec(BaseModel):
    """Architecture of a tabular MLP; stored in each version's lineage to rebuild it."""

    model_config = ConfigDict(extra="forbid")

    kind: str = MLP_ARCH
    input_dim: int = Field(ge=1, le=1_000_000)
    hidden: list[int] = Field(default_factory=lambda: [64, 64])
    activation: Activation = "relu"
    num_classes: int = Field(ge=2, le=100_000)
    feature_names: list[str] = Field(default_factory=list)
    class_names: list[str] = Field(default_factory=list)
    image: ImageSize | None = None  # the features are an image's pixels: heat-map explanations


class Standardize(nn.Module):
    """``(x - mean) / std`` with statistics fixed at training time."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, x: torch.Tensor) -> None:
        """Set the statistics from training features (constant columns keep std 1)."""
        std = x.std(dim=0)
        self.mean.copy_(x.mean(dim=0))
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def set_bounds(self, lo: torch.Tensor, hi: torch.Tensor, *, zero_based: bool = False) -> None:
        """Scale by public bounds instead of data statistics (DP): ``[lo, hi] -> [-1, 1]``,
        or ``[0, 1]`` when ``zero_based`` (pixel intensities: the background stays 0)."""
        span = (hi - lo) if zero_based else (hi - lo) / 2
        self.mean.copy_(lo if zero_based else (hi + lo) / 2)
        self.std.copy_(torch.where(span > 1e-12, span, torch.ones_like(span)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def build_mlp(spec: MLPSpec) -> nn.Sequential:
    """``Standardize → (Linear → ReLU or Tanh)* → Linear`` producing logits."""
    layers: list[nn.Module] = [Standardize(spec.input_dim)]
    width = spec.input_dim
    for hidden in spec.hidden:
        layers += [nn.Linear(width, hidden), ACTIVATIONS[spec.activation]()]
        width = hidden
    layers.append(nn.Linear(width, spec.num_classes))
    return nn.Sequential(*layers)
