"""Token attributions for transformer text classifiers (LayerIntegratedGradients on embeddings).

Works with any Hugging Face model that has ``get_input_embeddings()`` and returns ``.logits``;
this module does not import ``transformers`` itself, so it loads where that package is absent.
The baseline replaces every non-special token by the pad token, keeping [CLS]/[SEP] and padding.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol, cast

import captum
import numpy as np
import torch
from captum.attr import LayerIntegratedGradients
from torch import nn

from inhouse.errors import InvalidInputError, PayloadTooLargeError
from inhouse.explain._inputs import as_logits, checked_forward, eval_mode, pick, resolve_targets
from inhouse.explain.types import ExplainLimits, Explanation


class TokenizerLike(Protocol):
    """The part of a Hugging Face tokenizer this module uses."""

    pad_token_id: int | None
    all_special_ids: list[int]

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]: ...


def explain_text(
    model: nn.Module,
    input_ids: Any,
    *,
    attention_mask: Any = None,
    tokenizer: TokenizerLike | None = None,
    target: int | Sequence[int] | None = None,
    n_steps: int = 50,
    internal_batch_size: int | None = None,
    pad_token_id: int | None = None,
    layer: nn.Module | None = None,
    limits: ExplainLimits | None = None,
) -> Explanation:
    """Attribute a text classifier's output to its input tokens.

    Args:
        model: Hugging Face style classifier: ``model(input_ids=, attention_mask=)`` -> logits.
        input_ids: (rows, tokens) or one row of token ids.
        attention_mask: same shape, 1 for real tokens; defaults to all ones.
        tokenizer: gives token strings and special ids; without it tokens are the ids as text.
        target: class to explain (one, one per row, or ``None`` for the predicted class).
        n_steps: points on the integration path.
        internal_batch_size: rows per forward pass; ``None``: the whole path in one pass.
        pad_token_id: baseline token; defaults to the tokenizer's, the model config's, then 0.
        layer: embedding layer to attribute at; defaults to ``model.get_input_embeddings()``.
        limits: operator limits (instances, ``max_tokens``, ``max_n_steps``).

    Returns:
        An ``Explanation`` whose columns are the attended tokens of each row, in order
        (``tokens`` holds their strings; ``baseline`` holds baseline token ids).
    """
    limits = limits if limits is not None else ExplainLimits()
    embeddings = layer if layer is not None else _input_embeddings(model)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    started = time.perf_counter()
    with torch.inference_mode(False), eval_mode(model):
        ids = _token_ids("input_ids", input_ids, device)
        mask = (
            ids.new_ones(ids.shape)
            if attention_mask is None
            else _token_ids("attention_mask", attention_mask, device)
        )
        if mask.shape != ids.shape:
            raise InvalidInputError(
                f"attention_mask shape {tuple(mask.shape)} differs from input_ids "
                f"{tuple(ids.shape)}"
            )
        n_rows, seq_len = int(ids.shape[0]), int(ids.shape[1])
        if seq_len > limits.max_tokens:
            raise PayloadTooLargeError(f"too many tokens: {seq_len} > limit {limits.max_tokens}")
        limits.check(n_instances=n_rows, n_features=seq_len, method="layer_ig", n_steps=n_steps)
        vocab = getattr(embeddings, "num_embeddings", None)
        if int(ids.min()) < 0 or (vocab is not None and int(ids.max()) >= int(vocab)):
            raise InvalidInputError(f"input_ids out of range for a vocabulary of {vocab} tokens")

        def forward(token_ids: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
            return as_logits(model(input_ids=token_ids, attention_mask=token_mask))

        base = _baseline_ids(ids, mask, model, tokenizer, pad_token_id)
        outputs = checked_forward(forward, ids, mask)
        targets = resolve_targets(target, outputs)
        base_outputs = checked_forward(forward, base, mask)
        batch_size = max(internal_batch_size or n_rows * n_steps, 2 * n_rows)
        batch_size = min(batch_size, max(limits.max_internal_batch_size, 2 * n_rows))
        with torch.enable_grad():
            attr = LayerIntegratedGradients(forward, embeddings).attribute(
                ids,
                baselines=base,
                target=targets,
                additional_forward_args=(mask,),
                n_steps=n_steps,
                internal_batch_size=batch_size,
            )
    runtime_ms = (time.perf_counter() - started) * 1000.0

    per_token = cast(torch.Tensor, attr).detach().sum(dim=-1).double().cpu().numpy()
    mask_np = mask.cpu().numpy().astype(bool)
    ids_np, base_np = ids.cpu().numpy(), base.cpu().numpy()
    attributions = np.zeros((n_rows, seq_len), dtype=np.float64)
    baseline = np.zeros((n_rows, seq_len), dtype=np.float64)
    tokens: list[list[str]] = []
    for i in range(n_rows):
        kept = np.flatnonzero(mask_np[i])
        attributions[i, : kept.size] = per_token[i, kept]
        baseline[i, : kept.size] = base_np[i, kept]
        tokens.append(_token_strings([int(t) for t in ids_np[i, kept]], tokenizer))
    fx = pick(outputs, targets).double().cpu().numpy()
    fb = pick(base_outputs, targets).double().cpu().numpy()
    probabilities = (
        torch.softmax(outputs.double(), dim=1).cpu().numpy() if outputs.shape[1] > 1 else None
    )
    return Explanation(
        method="layer_ig",
        attributions=attributions,
        feature_names=[f"token_{j}" for j in range(seq_len)],
        input_shape=(seq_len,),
        baseline=baseline,
        baseline_kind="pad",
        targets=targets,
        predictions=[int(p) for p in outputs.argmax(dim=1).tolist()],
        probabilities=probabilities,
        target_outputs=fx,
        baseline_outputs=fb,
        delta=attributions.sum(axis=1) - (fx - fb),
        metadata={
            "method_name": "LayerIntegratedGradients",
            "layer": type(embeddings).__name__,
            "delta_kind": "completeness",
            "n_steps": n_steps,
            "integration": "gausslegendre",
            "internal_batch_size": batch_size,
            "captum_version": captum.__version__,
            "torch_version": torch.__version__,
            "runtime_ms": round(runtime_ms, 3),
            "ms_per_instance": round(runtime_ms / n_rows, 3),
        },
        tokens=tokens,
    )


def _input_embeddings(model: nn.Module) -> nn.Module:
    getter = getattr(model, "get_input_embeddings", None)
    layer = getter() if callable(getter) else None
    if not isinstance(layer, nn.Module):
        raise InvalidInputError("model has no get_input_embeddings(); pass layer= explicitly")
    return layer


def _token_ids(name: str, value: Any, device: torch.device) -> torch.Tensor:
    try:
        array = (
            value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} is not an array of integers") from exc
    if array.size == 0:
        raise InvalidInputError(f"{name} is empty")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or not np.equal(np.mod(array, 1), 0).all():
            raise InvalidInputError(f"{name} must hold integers (no NaN, Inf or fractions)")
    elif array.dtype.kind not in "iub":
        raise InvalidInputError(f"{name} must hold integers, got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise InvalidInputError(f"{name} must be (tokens,) or (rows, tokens), got {array.shape}")
    tensor = torch.as_tensor(array.astype(np.int64), device=device)
    return tensor.unsqueeze(0) if tensor.dim() == 1 else tensor


def _baseline_ids(
    ids: torch.Tensor,
    mask: torch.Tensor,
    model: nn.Module,
    tokenizer: TokenizerLike | None,
    pad_token_id: int | None,
) -> torch.Tensor:
    pad = pad_token_id
    if pad is None and tokenizer is not None:
        pad = tokenizer.pad_token_id
    if pad is None:
        pad = getattr(getattr(model, "config", None), "pad_token_id", None)
    pad = int(pad) if pad is not None else 0
    keep = mask == 0
    if tokenizer is not None:
        special = [s for s in tokenizer.all_special_ids if s != pad]
        if special:
            keep = keep | torch.isin(ids, torch.as_tensor(special, device=ids.device))
    return torch.where(keep, ids, torch.full_like(ids, pad))


def _token_strings(ids: list[int], tokenizer: TokenizerLike | None) -> list[str]:
    if tokenizer is None:
        return [str(i) for i in ids]
    return [str(t) for t in tokenizer.convert_ids_to_tokens(ids)]
