"""Token attributions of a generated answer to the prompt tokens, through Captum's LLM attribution.

Three methods, each giving one row per answer token (how much each prompt token raised that
token's log-probability) and a sequence-level total per prompt token (the answer's whole
log-probability):

- ``feature_ablation`` (default, fast): ``LLMAttribution(FeatureAblation)``, each prompt token
  replaced by the baseline token in turn, one forward pass of prompt + answer per token;
- ``shapley``: ``LLMAttribution(ShapleyValueSampling)``, ``samples`` random orders;
- ``integrated_gradients``: ``LLMGradientAttribution(LayerIntegratedGradients)`` on the input
  embedding layer, ``steps`` points from the baseline tokens' embeddings (float models only:
  it needs gradients).

The answer is the model's greedy one when no target text is given (its end-of-sequence token
is not part of it). Special tokens (chat markers) are not features: they are never removed.
Figures are drawn with matplotlib's Agg canvas directly, as in :mod:`inhouse.explain.plots`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from inhouse.errors import InvalidInputError

METHODS = ("feature_ablation", "shapley", "integrated_gradients")


@dataclass(frozen=True)
class TokenAttribution:
    """Attributions of an answer to its prompt: ``token[i, j]`` is prompt token ``j``'s share in
    answer token ``i``'s log-probability; ``sequence[j]`` its share in the whole answer's."""

    method: str
    prompt_tokens: list[str]
    answer_tokens: list[str]
    answer_ids: list[int]
    token: np.ndarray  # [answer tokens, prompt tokens]
    sequence: np.ndarray  # [prompt tokens]
    generated: bool  # the answer was generated (no target given)
    seconds: float


def _prompt_input(prompt_ids: list[int], tokenizer: Any, *, baseline: int, skip: set[int]) -> Any:
    """Captum's ``TextTokenInput`` over given ids (it would re-tokenize text otherwise)."""
    from captum.attr import TextTokenInput

    class PromptTokens(TextTokenInput):  # type: ignore[misc]
        def __init__(self) -> None:  # noqa: D107 - the fields TextTokenInput.__init__ sets
            ids = torch.tensor([prompt_ids])
            mask = torch.tensor([[i not in skip for i in prompt_ids]])
            self.inp_tensor = ids
            self.itp_mask = None if bool(mask.all()) else mask
            self.itp_tensor = ids if self.itp_mask is None else ids[mask].unsqueeze(0)
            self.skip_tokens = sorted(skip)
            self.tokenizer = tokenizer
            self.values = [tokenizer.decode([i]) for i in self.itp_tensor[0].tolist()]
            self.n_itp_features = len(self.values)
            self.baselines = baseline

    return PromptTokens()


@torch.no_grad()
def greedy_answer(
    module: Any, prompt_ids: list[int], *, max_new_tokens: int, eos_ids: tuple[int, ...]
) -> list[int]:
    """The greedy continuation of ``prompt_ids`` (KV cache), without its end-of-sequence token."""
    ids = torch.tensor([prompt_ids])
    out = module.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=list(eos_ids) or None,
        pad_token_id=eos_ids[0] if eos_ids else 0,
    )
    answer = [int(i) for i in out[0, len(prompt_ids) :]]
    while answer and answer[-1] in eos_ids:
        answer.pop()
    return answer


def attribute_tokens(
    module: nn.Module,
    tokenizer: Any,
    prompt_ids: list[int],
    *,
    target_ids: list[int] | None = None,
    method: str = "feature_ablation",
    max_new_tokens: int = 16,
    eos_ids: tuple[int, ...] = (),
    samples: int = 4,
    steps: int = 16,
) -> TokenAttribution:
    """Attribute the answer (``target_ids``, or the greedy one) to the prompt's tokens.

    Raises:
        InvalidInputError: unknown method, an empty prompt, or a prompt of special tokens only.
    """
    from captum.attr import (
        FeatureAblation,
        LayerIntegratedGradients,
        LLMAttribution,
        LLMGradientAttribution,
        ShapleyValueSampling,
    )

    if method not in METHODS:
        raise InvalidInputError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if not prompt_ids:
        raise InvalidInputError("the prompt has no tokens")
    start = time.perf_counter()
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    generated = target_ids is None
    if target_ids is None:
        target_ids = greedy_answer(
            module, prompt_ids, max_new_tokens=max_new_tokens, eos_ids=eos_ids
        )
        if not target_ids:  # the model ends at once: explain that ending
            target_ids = list(eos_ids[:1]) or [0]
    if not target_ids:
        raise InvalidInputError("target has no tokens")
    pad = getattr(tokenizer, "pad_token_id", None)
    baseline = int(pad if pad is not None else 0)
    inp = _prompt_input(prompt_ids, tokenizer, baseline=baseline, skip=special)
    if inp.n_itp_features == 0:
        raise InvalidInputError("the prompt has only special tokens: nothing to attribute")
    target = torch.tensor(target_ids)
    if method == "integrated_gradients":
        embeddings = module.get_input_embeddings()  # type: ignore[operator]
        layer_ig = LayerIntegratedGradients(module, embeddings)
        with torch.enable_grad():
            result = LLMGradientAttribution(layer_ig, tokenizer).attribute(
                inp, target=target, n_steps=steps
            )
    else:
        if method == "shapley":
            algorithm, options = ShapleyValueSampling(module), {"n_samples": samples}
        else:
            algorithm, options = FeatureAblation(module), {}
        with torch.no_grad():
            result = LLMAttribution(algorithm, tokenizer).attribute(
                inp, target=target, forward_in_tokens=False, **options
            )
    token = np.asarray(result.token_attr.detach().cpu().float().numpy(), dtype=np.float64)
    sequence = np.asarray(result.seq_attr.detach().cpu().float().numpy(), dtype=np.float64)
    return TokenAttribution(
        method=method,
        prompt_tokens=list(inp.values),
        answer_tokens=[tokenizer.decode([i]) for i in target_ids],
        answer_ids=list(target_ids),
        token=token.reshape(len(target_ids), inp.n_itp_features),
        sequence=sequence.reshape(inp.n_itp_features),
        generated=generated,
        seconds=time.perf_counter() - start,
    )


def _label(token: str) -> str:
    shown = token.replace("\n", "\\n")
    return shown if len(shown) <= 14 else shown[:13] + "…"


def heatmap_png(
    attribution: TokenAttribution, *, title: str | None = None, dpi: int = 100
) -> bytes:
    """Answer tokens (rows) x prompt tokens (columns), the sequence total as the last row;
    colours centred on zero (red: raised the answer's log-probability, blue: lowered it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    heat = np.vstack([attribution.token, attribution.sequence[None, :]])
    if not np.isfinite(heat).all():
        raise InvalidInputError("attributions contain NaN or Inf values")
    rows, cols = heat.shape
    fig = Figure(figsize=(min(2.5 + 0.32 * cols, 40.0), min(1.8 + 0.3 * rows, 30.0)), dpi=dpi)
    ax = fig.add_subplot()
    bound = float(np.abs(heat).max()) or 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound)
    shown = ax.imshow(heat, cmap="RdBu_r", norm=norm, interpolation="nearest", aspect="auto")
    ax.set_xticks(range(cols), [_label(t) for t in attribution.prompt_tokens], rotation=90)
    labels = [_label(t) for t in attribution.answer_tokens] + ["(sequence)"]
    ax.set_yticks(range(rows), labels)
    ax.axhline(rows - 1.5, color="black", linewidth=0.8)
    ax.set_xlabel("prompt token")
    ax.set_ylabel("answer token")
    ax.set_title(title or f"token attribution ({attribution.method})", fontsize=10)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)  # type: ignore[no-untyped-call]
    return buffer.getvalue()
