"""Int8 serving modules: weights held as int8 + per-row scales, run dense or dynamic int8.

:class:`Int8Linear` runs one of two kernels, chosen per layer (``mode``):

- ``weight_only``: the int8 weight is dequantized once to float32 and run with ``F.linear``.
  On this 2-core CPU it is the fastest for small layers (a 64x64 layer: 2 us vs 10 us).
- ``dynamic``: activations are quantized per batch and multiplied by the int8 weight in the
  fbgemm/x86 kernel (``torch.ops.quantized.linear_dynamic``, what ``quantize_dynamic`` runs).
  4-8x faster than float32 from 256x256 up at batch 32, 2.5x at 1024x1024 at batch 1.
  Activations use all 8 bits where the CPU's kernel sums int8 products without saturating
  (AVX512-VNNI; probed once, see :func:`full_range_activations`), else 7 (``reduce_range``).

An optional ``smooth`` buffer (one factor per input channel, SmoothQuant) multiplies the input
before it is quantized; the stored weight's columns were divided by the same factors, so the
product is unchanged while outlier input channels no longer set the one activation scale.

Scales are rounded to float16 precision when they fit, so the artifact stores them in two bytes
and a loaded module computes exactly what the in-memory one did.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

LinearMode = Literal["weight_only", "dynamic"]
LINEAR_MODES: tuple[LinearMode, ...] = ("weight_only", "dynamic")

_FP16_MIN_NORMAL = 6.104e-05
_FP16_MAX = 65504.0


def _round_scale(scale: torch.Tensor) -> torch.Tensor:
    """Scales rounded to float16 precision when every one is a normal float16, else float32."""
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero row
    if bool(((scale >= _FP16_MIN_NORMAL) & (scale <= _FP16_MAX)).all()):
        return scale.half().float()
    return scale.float()


def quantize_rows(
    weight: torch.Tensor, *, per_channel: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 quantization: ``weight ~= q * scale[:, None]``; zeros stay exactly zero.

    Returns ``(q, scale)`` with ``q`` int8 in [-127, 127] and ``scale`` of shape ``[rows]``
    (``per_channel``) or ``[1]``.
    """
    weight = weight.detach().float()
    if per_channel:
        amax = weight.abs().amax(dim=1)
    else:
        amax = weight.abs().amax().reshape(1)
    scale = _round_scale(amax / 127.0)
    q = torch.round(weight / scale.unsqueeze(1)).clamp_(-127, 127).to(torch.int8)
    return q, scale


def dynamic_kernel_available() -> bool:
    """Whether this torch build has the fbgemm/x86 dynamic int8 linear kernel."""
    return "x86" in torch.backends.quantized.supported_engines or (
        "fbgemm" in torch.backends.quantized.supported_engines
    )


def _pack(qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> Any:
    rows = qweight.shape[0]
    scales = scale.double().expand(rows).contiguous()
    zero_points = torch.zeros(rows, dtype=torch.long)
    with warnings.catch_warnings():
        # quantized tensors are deprecated in torch; the kernel has no other entry point yet
        warnings.simplefilter("ignore", UserWarning)
        packed = torch._make_per_channel_quantized_tensor(qweight, scales, zero_points, 0)
        return torch.ops.quantized.linear_prepack(packed, bias)


@functools.cache
def _full_range_exact(engine: str) -> bool:
    # uint8 255 x int8 127, summed in pairs, is 64,770: an int16 intermediate (AVX2's vpmaddubsw)
    # saturates at 32,767 and the result comes out wrong; VNNI sums into int32 and stays exact.
    qweight = torch.full((8, 64), 127, dtype=torch.int8)
    packed = _pack(qweight, torch.full((8,), 0.01), None)
    x = torch.ones(2, 64)
    x[0, 0] = 0.0
    out = torch.ops.quantized.linear_dynamic(x, packed, False)
    return bool(torch.allclose(out, x @ (qweight.float() * 0.01).T, rtol=1e-3))


def full_range_activations() -> bool:
    """Whether the dynamic kernel runs 8-bit activations exactly on this CPU and engine.

    Where it does not (no VNNI), activations are quantized to 7 bits (``reduce_range``) so
    pairs of products cannot overflow the kernel's int16 intermediate.
    """
    if not dynamic_kernel_available():
        return False
    return _full_range_exact(torch.backends.quantized.engine)


def round_smooth(factors: torch.Tensor) -> torch.Tensor:
    """Input factors rounded to float16 precision (stored in two bytes), clamped to its range."""
    factors = torch.where(factors > 0, factors.float(), torch.ones_like(factors.float()))
    return factors.clamp(_FP16_MIN_NORMAL, _FP16_MAX).half().float()


class Int8Linear(nn.Module):
    """A Linear layer whose weight is int8 with per-row scales (see the module docstring)."""

    qweight: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor | None
    smooth: torch.Tensor | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        scale_rows: int | None = None,
        mode: LinearMode = "weight_only",
        smooth: bool = False,
    ) -> None:
        super().__init__()
        if mode not in LINEAR_MODES:
            raise ValueError(f"mode must be one of {LINEAR_MODES}, got {mode!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.mode: LinearMode = mode
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer(
            "scale", torch.ones(out_features if scale_rows is None else scale_rows)
        )
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self.register_buffer("smooth", torch.ones(in_features) if smooth else None)
        self._weight: torch.Tensor | None = None
        self._packed: Any = None
        self._reduce_range = True

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        *,
        per_channel: bool = True,
        mode: LinearMode = "weight_only",
        smooth: torch.Tensor | None = None,
    ) -> Int8Linear:
        """Quantize a float ``nn.Linear`` (zeros from pruning are kept exactly).

        ``smooth`` (``[in_features]``, positive) multiplies the input; the weight's columns are
        divided by it before quantization so the layer computes the same product.
        """
        weight = linear.weight.detach().float()
        if smooth is not None:
            if smooth.shape != (linear.in_features,):
                raise ValueError(
                    f"smooth must have shape ({linear.in_features},), got {tuple(smooth.shape)}"
                )
            smooth = round_smooth(smooth)
            weight = weight / smooth
        q, scale = quantize_rows(weight, per_channel=per_channel)
        layer = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            scale_rows=scale.numel(),
            mode=mode,
            smooth=smooth is not None,
        )
        layer.qweight.copy_(q)
        layer.scale.copy_(scale)
        if smooth is not None and layer.smooth is not None:
            layer.smooth.copy_(smooth)
        if linear.bias is not None and layer.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer.refresh()

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight this layer computes with (``q * scale``, times ``smooth``)."""
        weight = self.qweight.float() * self.scale.unsqueeze(1)
        return weight if self.smooth is None else weight * self.smooth

    def refresh(self) -> Int8Linear:
        """Rebuild the kernel's cached weight; call after changing the buffers (e.g. loading)."""
        self._weight, self._packed = None, None
        if self.mode == "weight_only":
            self._weight = self.dequantized_weight()  # smooth folded in: no extra multiply
            return self
        self._packed = _pack(self.qweight, self.scale, self.bias)
        self._reduce_range = not full_range_activations()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "dynamic":
            if self._packed is None:
                self.refresh()
            x = x.float()
            if self.smooth is not None:
                x = x * self.smooth
            out: torch.Tensor = torch.ops.quantized.linear_dynamic(
                x.contiguous(), self._packed, self._reduce_range
            )
            return out
        if self._weight is None:
            self.refresh()
        return F.linear(x, self._weight, self.bias)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, mode={self.mode}"
        )


class Int8Embedding(nn.Module):
    """An embedding table stored as int8 rows with one scale per row; dequantizes on lookup."""

    qweight: torch.Tensor
    scale: torch.Tensor

    def __init__(self, num_embeddings: int, embedding_dim: int, *, padding_idx: int | None = None):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.register_buffer(
            "qweight", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8)
        )
        self.register_buffer("scale", torch.ones(num_embeddings))

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding) -> Int8Embedding:
        """Quantize a float ``nn.Embedding`` row by row."""
        if embedding.max_norm is not None:
            raise ValueError("embeddings with max_norm renormalize on lookup; cannot quantize")
        q, scale = quantize_rows(embedding.weight, per_channel=True)
        layer = cls(
            embedding.num_embeddings, embedding.embedding_dim, padding_idx=embedding.padding_idx
        )
        layer.qweight.copy_(q)
        layer.scale.copy_(scale)
        return layer

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized float32 table (for code that inspects ``embedding.weight``)."""
        return self.qweight.float() * self.scale.unsqueeze(1)

    def refresh(self) -> Int8Embedding:
        """Nothing is cached; present so loaders can treat every int8 module alike."""
        return self

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(ids, self.qweight).float()
        return rows * F.embedding(ids, self.scale.unsqueeze(1))

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8"
