"""A short, safe description of simple architectures, so an artifact can rebuild its module.

An ``nn.Sequential`` whose children are all known layer types is written as a list such as
``[["Standardize", 64], ["Linear", 64, 64, 1], ["ReLU"], ...]``. Only types in the allowlist
are ever built (nothing is imported by name from the artifact). Other models, a Hugging Face
BERT for one, are rebuilt by the caller's ``build`` function instead; a project module type can
join the allowlist with :func:`register_layer`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from inhouse.compress.layers import Int8Linear
from inhouse.errors import IntegrityError

Spec = list[Any]


class Standardize(nn.Module):
    """``(x - mean) / std`` with ``mean`` and ``std`` held as buffers (saved with the model)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))

    @classmethod
    def fit(cls, inputs: torch.Tensor, *, min_std: float = 1e-6) -> Standardize:
        """Mean and std of ``inputs`` (rows are samples); constant features get std 1."""
        layer = cls(inputs.shape[1])
        std = inputs.std(dim=0)
        layer.mean.copy_(inputs.mean(dim=0))
        layer.std.copy_(torch.where(std > min_std, std, torch.ones_like(std)))
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}"


@dataclass(frozen=True)
class _LayerType:
    cls: type[nn.Module]
    args: Callable[[nn.Module], list[Any]]


def _linear_args(layer: nn.Module) -> list[Any]:
    if isinstance(layer, (nn.Linear, Int8Linear)):
        return [layer.in_features, layer.out_features, int(layer.bias is not None)]
    raise TypeError(type(layer).__name__)


def _no_args(layer: nn.Module) -> list[Any]:
    return []


_TYPES: dict[str, _LayerType] = {
    "Linear": _LayerType(nn.Linear, _linear_args),
    "Standardize": _LayerType(Standardize, lambda layer: [layer.num_features]),
    "ReLU": _LayerType(nn.ReLU, _no_args),
    "GELU": _LayerType(nn.GELU, _no_args),
    "Tanh": _LayerType(nn.Tanh, _no_args),
    "Sigmoid": _LayerType(nn.Sigmoid, _no_args),
    "Identity": _LayerType(nn.Identity, _no_args),
    "Flatten": _LayerType(nn.Flatten, _no_args),
    "Dropout": _LayerType(nn.Dropout, _no_args),  # identity when serving
}


def register_layer(name: str, cls: type[nn.Module], args: Callable[[nn.Module], list[Any]]) -> None:
    """Allow ``cls`` in architecture specs: ``cls(*args(layer))`` must rebuild ``layer``'s shape.

    Its parameters and buffers come from the artifact, so ``args`` gives sizes, not values.
    """
    _TYPES[name] = _LayerType(cls, args)


def _type_name(layer: nn.Module) -> str | None:
    if isinstance(layer, Int8Linear):
        return "Linear"
    for name, kind in _TYPES.items():
        if type(layer) is kind.cls:
            return name
    return None


def describe(module: nn.Module) -> Spec | None:
    """The spec of ``module`` if it is an ``nn.Sequential`` of known layers, else None."""
    if type(module) is not nn.Sequential:
        return None
    spec: Spec = []
    for child in module.children():
        name = _type_name(child)
        if name is None:
            return None
        spec.append([name, *_TYPES[name].args(child)])
    return spec


def build(spec: Any) -> nn.Module:
    """The float module a spec describes; an unknown or malformed entry raises IntegrityError."""
    if not isinstance(spec, list):
        raise IntegrityError("architecture spec is not a list")
    layers: list[nn.Module] = []
    for entry in spec:
        if not isinstance(entry, list) or not entry or entry[0] not in _TYPES:
            raise IntegrityError(f"unknown layer in architecture spec: {entry!r}")
        name, args = entry[0], entry[1:]
        if not all(isinstance(arg, (int, float, str)) for arg in args):
            raise IntegrityError(f"bad arguments in architecture spec: {entry!r}")
        try:
            if name == "Linear":
                layers.append(nn.Linear(args[0], args[1], bias=bool(args[2])))
            else:
                layers.append(_TYPES[name].cls(*args))
        except (TypeError, ValueError, IndexError, RuntimeError) as exc:
            raise IntegrityError(f"cannot build {entry!r}: {exc}") from exc
    return nn.Sequential(*layers)
