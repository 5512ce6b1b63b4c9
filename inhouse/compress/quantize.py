"""Post-training int8 quantization over any module tree (an MLP, a Hugging Face BERT).

Every ``nn.Linear`` becomes an :class:`~inhouse.compress.layers.Int8Linear` (weights int8 with
per-row scales, activations float32); optionally every ``nn.Embedding`` becomes an
:class:`~inhouse.compress.layers.Int8Embedding`. No calibration data is needed; given a few
batches of training inputs, the dynamic-kernel layers are smoothed where that brings their
int8 output closer to the float one (SmoothQuant, see :mod:`inhouse.compress.smooth`).

Why not ``torchao``: measured here (torch 2.13 CPU, 2 cores, eager), torchao 0.18's
int8 dynamic-activation config ran a 64-64-10 MLP in 307 us vs 44 us for
``torch.ao.quantization.quantize_dynamic`` and 17 us in float32, and a 384-1536 MLP at batch 32
in 1044 us vs 265 us (float32: 1946 us): its CPU path wants ``torch.compile``. So large layers
run the same fbgemm/x86 kernel ``quantize_dynamic`` uses, small ones dequantized float32.
Static (calibrated) activation quantization is not offered: it needs quant/dequant stubs in the
model, and for layers this size the dynamic kernel already takes the win.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from inhouse.compress.layers import (
    Int8Embedding,
    Int8Linear,
    LinearMode,
    dynamic_kernel_available,
)
from inhouse.compress.smooth import choose_smoothing
from inhouse.config import CompressionSettings, Runtime


def choose_mode(
    in_features: int, out_features: int, runtime: Runtime, dynamic_min_weights: int = 32_768
) -> LinearMode:
    """The kernel an int8 Linear of this shape runs under ``runtime`` (see CompressionSettings)."""
    if runtime == "weight_only" or not dynamic_kernel_available():
        return "weight_only"
    if runtime == "dynamic" or in_features * out_features >= dynamic_min_weights:
        return "dynamic"
    return "weight_only"


def quantize_linears(
    module: nn.Module,
    *,
    per_channel: bool = True,
    runtime: Runtime = "auto",
    dynamic_min_weights: int = 32_768,
    exclude: Iterable[str] = (),
    calibration: Sequence[Any] | None = None,
    smooth_alphas: Sequence[float] = (),
) -> list[str]:
    """Replace, in place, every ``nn.Linear`` not in ``exclude`` by an Int8Linear.

    With ``calibration`` (batches of training inputs, each a tensor or a tuple of positional
    arguments) and ``smooth_alphas``, each layer that runs the dynamic kernel is smoothed with
    the alpha (or not at all) that keeps its int8 output closest to the float one.
    Returns the names of the replaced layers.
    """
    skip = set(exclude)
    targets = [
        (name, layer)
        for name, layer in module.named_modules()
        if isinstance(layer, nn.Linear) and name and name not in skip
    ]
    modes = {
        name: choose_mode(layer.in_features, layer.out_features, runtime, dynamic_min_weights)
        for name, layer in targets
    }

    def quantizer(layer: nn.Linear, name: str) -> Any:
        def quantize(smooth: torch.Tensor | None) -> Int8Linear:
            return Int8Linear.from_linear(
                layer, per_channel=per_channel, mode=modes[name], smooth=smooth
            )

        return quantize

    factors: dict[str, torch.Tensor | None] = {}
    if calibration is not None and smooth_alphas:
        dynamic = {
            name: (layer, quantizer(layer, name))
            for name, layer in targets
            if modes[name] == "dynamic"
        }
        factors = choose_smoothing(module, calibration, dynamic, smooth_alphas)
    for name, layer in targets:
        module.set_submodule(name, quantizer(layer, name)(factors.get(name)), strict=True)
    return [name for name, _ in targets]


def quantize_embeddings(module: nn.Module, *, exclude: Iterable[str] = ()) -> list[str]:
    """Replace, in place, every ``nn.Embedding`` not in ``exclude`` by an Int8Embedding."""
    skip = set(exclude)
    targets = [
        (name, layer)
        for name, layer in module.named_modules()
        if isinstance(layer, nn.Embedding) and name and name not in skip
    ]
    for name, layer in targets:
        module.set_submodule(name, Int8Embedding.from_embedding(layer), strict=True)
    return [name for name, _ in targets]


@torch.no_grad()
def round_to_float16(module: nn.Module) -> int:
    """Round every float32 parameter and buffer to float16 precision, in place (dtype kept).

    Values outside float16's range and the scales and input factors of int8 layers (which
    chose their own precision) are left alone. Returns how many tensors were rounded.
    """
    scales = {
        id(tensor)
        for layer in module.modules()
        if isinstance(layer, (Int8Linear, Int8Embedding))
        for tensor in (layer.scale, getattr(layer, "smooth", None))
        if tensor is not None
    }
    rounded = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.dtype != torch.float32 or tensor.numel() == 0 or id(tensor) in scales:
            continue
        if bool((tensor.abs() > 65504.0).any()):
            continue
        tensor.copy_(tensor.half().float())
        rounded += 1
    return rounded


def quantize_model(
    module: nn.Module, settings: CompressionSettings, *, calibration: Sequence[Any] | None = None
) -> nn.Module:
    """Apply the quantization ``settings`` ask for, in place, and return ``module``.

    ``calibration`` (a few batches of training inputs) lets the int8 layers be smoothed
    (``settings.smooth_alphas``; see :mod:`inhouse.compress.smooth`).
    """
    if settings.quantize == "int8":
        quantize_linears(
            module,
            per_channel=settings.per_channel,
            runtime=settings.runtime,
            dynamic_min_weights=settings.dynamic_min_weights,
            exclude=settings.exclude,
            calibration=calibration,
            smooth_alphas=settings.smooth_alphas,
        )
    if settings.quantize_embeddings:
        quantize_embeddings(module, exclude=settings.exclude)
    if settings.float16_storage:
        round_to_float16(module)
    for layer in module.modules():
        if isinstance(layer, (Int8Linear, Int8Embedding)):
            layer.refresh()
    return module
