"""int8 copies of causal LMs for CPU serving: every Linear and the embedding, stored as int8.

Weights are int8 with one float scale per output row (per channel, symmetric), the embedding
table int8 with one scale per row (dequantized rows on lookup). Which Linear kernel runs was
measured here on SmolLM2-135M (2 threads, AVX512-VNNI, see benchmarks/bench_llm_compress.py):

- dynamic int8 (activations quantized on the fly, the fbgemm/x86 kernel that
  ``torch.ao.quantization.quantize_dynamic`` runs): the fastest, e.g. the 576x49152 output
  layer at batch 1 in 8 ms vs 22 ms float32, and 4-8x faster on prompts;
- weight-only int8 (``torch.ops.aten._weight_int8pack_mm``): slower than float32 here
  (138 us vs 32 us for 576x576 at batch 1), so it is not used.

``quantize_dynamic`` itself quantizes weights per tensor and a whole prompt's activations with
one scale: held-out perplexity rose 52%. Here weights are per row and each token's activations
get their own scale (:class:`TokenInt8Linear`: the row is divided by its largest magnitude
before the kernel and the output multiplied back, exact for a linear map), which keeps the
increase within a few percent; dividing each RMSNorm's gain out of the next layers' inputs and
into their weights (:func:`norm_factors`, data-free SmoothQuant) takes off about one more point.

The tie of SmolLM2's output layer to its input embedding is cut: both become int8 (the output
layer a dynamic Linear, the embedding an int8 table); the artifact (``compressed`` format,
safetensors, see :mod:`inhouse.compress.artifact`) stores each once, still about 3.3x smaller
than the float32 parent. Nothing is pickled.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from inhouse.compress.layers import Int8Embedding, Int8Linear, LinearMode, _pack
from inhouse.compress.quantize import choose_mode
from inhouse.config import Runtime
from inhouse.errors import IntegrityError
from inhouse.registry import COMPRESSED_FORMAT, ModelVersion, Registry

ROLE = "int8"
PER_TOKEN = "dynamic_per_token"


class TokenInt8Linear(Int8Linear):
    """An :class:`Int8Linear` whose dynamic kernel quantizes each token's activations with its
    own scale (the bias is added after the kernel, so the rescaling stays exact)."""

    def refresh(self) -> TokenInt8Linear:
        super().refresh()
        if self.mode == "dynamic":
            self._packed = _pack(self.qweight, self.scale, None)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode != "dynamic":
            return super().forward(x)
        if self._packed is None:
            self.refresh()
        x = x.float()
        if self.smooth is not None:
            x = x * self.smooth
        amax = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8)
        out: torch.Tensor = torch.ops.quantized.linear_dynamic(
            (x / amax).contiguous(), self._packed, self._reduce_range
        )
        out = out * amax
        return out if self.bias is None else out + self.bias

    @classmethod
    def of(cls, layer: Int8Linear) -> TokenInt8Linear:
        """The same int8 layer (buffers shared) running per-token activation scales."""
        new = cls(
            layer.in_features,
            layer.out_features,
            bias=layer.bias is not None,
            scale_rows=layer.scale.numel(),
            mode=layer.mode,
            smooth=layer.smooth is not None,
        )
        new.load_state_dict(layer.state_dict())
        return new.refresh()


def _untie(module: nn.Module) -> None:
    """Give the output layer its own weight tensor (a tied one is the embedding's)."""
    head = getattr(module, "lm_head", None)
    if isinstance(head, nn.Linear):
        head.weight = nn.Parameter(head.weight.detach().clone(), requires_grad=False)
    config = getattr(module, "config", None)
    if config is not None and hasattr(config, "tie_word_embeddings"):
        config.tie_word_embeddings = False


_NORM_INPUTS = {
    "input_layernorm": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "post_attention_layernorm": ("mlp.gate_proj", "mlp.up_proj"),
}


def norm_factors(module: nn.Module) -> dict[str, torch.Tensor]:
    """Input factors (``1 / |gain|``) of the Linear layers that read a norm's output.

    An RMSNorm's per-channel gain is where most of a layer input's outlier channels come
    from; dividing it back out of the input and into the weight's columns (SmoothQuant with
    the gain as the scale) flattens the input the int8 kernel sees, with no calibration data.
    Llama-family names: each layer's two norms, and the final norm before ``lm_head``.
    """
    factors: dict[str, torch.Tensor] = {}
    layers = dict(module.named_modules())
    pairs = [("model.norm", "lm_head")]
    for name in layers:
        for suffix, targets in _NORM_INPUTS.items():
            if name.endswith(f".{suffix}"):
                prefix = name.removesuffix(suffix)
                pairs += [(name, prefix + target) for target in targets]
    for norm_name, target in pairs:
        norm, linear = layers.get(norm_name), layers.get(target)
        gain = getattr(norm, "weight", None)
        if isinstance(linear, nn.Linear) and isinstance(gain, torch.Tensor):
            if gain.shape == (linear.in_features,):
                factors[target] = 1.0 / gain.detach().float().abs().clamp_min(1e-3)
    return factors


@torch.no_grad()
def quantize_module(
    module: nn.Module, *, runtime: Runtime = "auto", dynamic_min_weights: int = 32_768
) -> tuple[nn.Module, dict[str, Any]]:
    """An int8 copy of the float causal LM ``module`` (left untouched), and what was done.

    Every ``nn.Linear`` becomes a :class:`TokenInt8Linear` (kernel by ``runtime``, see
    :func:`inhouse.compress.quantize.choose_mode`), every ``nn.Embedding`` an
    :class:`Int8Embedding`; other tensors (norms, the tokenizer buffer) are kept as they are.

    Returns:
        ``(int8_module, quantization)``: the module in eval mode and the JSON record that goes
        into the int8 version's spec (``spec["quantization"]``).
    """
    quantized = copy.deepcopy(module).eval()
    _untie(quantized)
    factors = norm_factors(quantized)
    modes: dict[str, int] = {}
    for name, layer in list(quantized.named_modules()):
        if not name:
            continue
        if isinstance(layer, nn.Linear):
            mode: LinearMode = choose_mode(
                layer.in_features, layer.out_features, runtime, dynamic_min_weights
            )
            smooth = factors.get(name) if mode == "dynamic" else None
            int8 = Int8Linear.from_linear(layer, mode=mode, smooth=smooth)
            new: nn.Module = TokenInt8Linear.of(int8)
            modes[mode] = modes.get(mode, 0) + 1
        elif isinstance(layer, nn.Embedding):
            new = Int8Embedding.from_embedding(layer)
        else:
            continue
        quantized.set_submodule(name, new, strict=True)
    quantized.requires_grad_(False)
    record = {
        "weights": "int8, symmetric, one scale per output row",
        "embedding": "int8 rows, one scale per row",
        "activations": PER_TOKEN,
        "smoothing": f"norm gains folded into {len(factors)} layers' weights (no data)",
        "runtime": runtime,
        "linear_layers": modes,
    }
    return quantized, record


def int8_spec(parent_spec: dict[str, Any], quantization: dict[str, Any]) -> dict[str, Any]:
    """The spec of the int8 version of a ``base`` LLM version."""
    return {**parent_spec, "role": ROLE, "quantization": quantization}


def per_token(module: nn.Module) -> nn.Module:
    """``module`` with each plain :class:`Int8Linear` swapped for a :class:`TokenInt8Linear`."""
    for name, layer in list(module.named_modules()):
        if type(layer) is Int8Linear:
            module.set_submodule(name, TokenInt8Linear.of(layer), strict=True)
    return module


def load_quantized_module(registry: Registry, info: ModelVersion) -> nn.Module:
    """The runnable int8 module of an ``int8`` LLM version (decrypted in memory, eval, CPU).

    Raises:
        IntegrityError: the version is not an int8 LLM or its bytes do not fit its spec.
    """
    from inhouse.compress import load_compressed
    from inhouse.kinds.modules import build_model

    if info.spec.get("role") != ROLE or info.format != COMPRESSED_FORMAT:
        raise IntegrityError(
            f"{info.model} v{info.version} is not an int8 LLM version "
            f"(role {info.spec.get('role')!r}, format {info.format!r})"
        )
    data = registry.read_artifact(info)
    module = load_compressed(data, build=lambda: _untied(build_model(info.spec)))
    if info.spec.get("quantization", {}).get("activations") == PER_TOKEN:
        per_token(module)
    return module.eval().requires_grad_(False)


def _untied(module: nn.Module) -> nn.Module:
    _untie(module)
    return module
