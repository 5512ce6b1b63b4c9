"""Validation and plumbing shared by the explanation methods (private).

Every check raises ``InvalidInputError`` with a one-line message; nothing here uses ``assert``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from inhouse.errors import InvalidInputError

ForwardFn = Callable[..., torch.Tensor]


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first parameter (CPU float32 if none)."""
    for param in model.parameters():
        dtype = param.dtype if param.dtype.is_floating_point else torch.float32
        return param.device, dtype
    return torch.device("cpu"), torch.float32


def to_tensor(
    name: str, value: Any, *, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Convert array-like ``value`` to a finite tensor, or raise ``InvalidInputError``."""
    try:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().to(device=device, dtype=dtype)
        else:
            tensor = torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=dtype)
            tensor = tensor.to(device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidInputError(f"{name} is not a numeric array: {_first_line(exc)}") from exc
    if tensor.numel() == 0:
        raise InvalidInputError(f"{name} is empty")
    if not bool(torch.isfinite(tensor).all()):
        raise InvalidInputError(f"{name} contains NaN or Inf values")
    return tensor


def as_batch(inputs: torch.Tensor) -> torch.Tensor:
    """A 1-D tensor is one instance; anything of higher rank is a batch along dim 0."""
    if inputs.dim() == 0:
        raise InvalidInputError("inputs must be an array of features, got a scalar")
    return inputs.unsqueeze(0) if inputs.dim() == 1 else inputs


def feature_names_for(n_features: int, names: Sequence[str] | None) -> list[str]:
    """Check ``names`` against the feature count, or make ``feature_0``..``feature_n-1``."""
    if names is None:
        return [f"feature_{i}" for i in range(n_features)]
    if len(names) != n_features:
        raise InvalidInputError(
            f"wrong feature count: inputs have {n_features} features, "
            f"feature_names has {len(names)}"
        )
    return [str(n) for n in names]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore its previous mode after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def logits_fn(model: nn.Module) -> ForwardFn:
    """Forward function returning a 2-D (rows, outputs) tensor of the model's logits.

    Hugging Face outputs are unwrapped (``.logits``), tuples give their first item and a 1-D
    output (one score per row) becomes one column.
    """

    def forward(*args: Any) -> torch.Tensor:
        return as_logits(model(*args))

    return forward


def as_logits(out: Any) -> torch.Tensor:
    """A model's output as a 2-D (rows, outputs) tensor (see ``logits_fn``)."""
    if hasattr(out, "logits"):
        out = out.logits
    elif isinstance(out, tuple | list):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise InvalidInputError(f"model returned {type(out).__name__}, expected a tensor")
    return out.unsqueeze(1) if out.dim() == 1 else out.reshape(out.shape[0], -1)


def checked_forward(forward: ForwardFn, *args: torch.Tensor) -> torch.Tensor:
    """Run ``forward`` without grad, turning shape errors into ``InvalidInputError``."""
    try:
        with torch.no_grad():
            return forward(*args).detach()
    except (RuntimeError, ValueError, IndexError) as exc:
        shape = tuple(args[0].shape[1:])
        raise InvalidInputError(
            f"inputs of per-instance shape {shape} do not fit the model: {_first_line(exc)}"
        ) from exc


def resolve_targets(target: Any, outputs: torch.Tensor) -> list[int]:
    """Target per row: the predicted class when ``None``; range-checked otherwise."""
    n_rows, n_outputs = int(outputs.shape[0]), int(outputs.shape[1])
    if isinstance(target, torch.Tensor):
        target = target.tolist()
    if target is None:
        return [int(t) for t in outputs.argmax(dim=1).tolist()]
    if isinstance(target, int | np.integer):
        targets = [int(target)] * n_rows
    else:
        targets = [int(t) for t in target]
        if len(targets) != n_rows:
            raise InvalidInputError(
                f"target has {len(targets)} entries for {n_rows} instances; give one per instance"
            )
    for t in targets:
        if not 0 <= t < n_outputs:
            raise InvalidInputError(f"target {t} out of range: the model has {n_outputs} outputs")
    return targets


def resolve_baseline(
    baseline: Any,
    background: Any,
    kind: str,
    batch: torch.Tensor,
) -> tuple[torch.Tensor, str]:
    """Baseline tensor shaped like ``batch`` and the kind it was made from.

    An explicit ``baseline`` (scalar, one instance, or one per instance) wins over ``kind``;
    ``kind == "mean"`` needs a ``background`` sample.
    """
    instance_shape = tuple(batch.shape[1:])
    n_features = math.prod(instance_shape)
    if baseline is not None:
        tensor = to_tensor("baseline", baseline, device=batch.device, dtype=batch.dtype)
        if tensor.numel() == 1:
            return torch.full_like(batch, float(tensor.item())), "custom"
        if tensor.numel() == n_features:
            return tensor.reshape(1, *instance_shape).expand_as(batch).clone(), "custom"
        if tensor.numel() == batch.numel():
            return tensor.reshape(batch.shape).clone(), "custom"
        raise InvalidInputError(
            f"baseline has {tensor.numel()} values; expected 1, {n_features} (one instance) "
            f"or {batch.numel()} (one per instance)"
        )
    if kind == "mean":
        if background is None:
            raise InvalidInputError("baseline 'mean' needs a background sample; pass background=")
        bg = as_batch(to_tensor("background", background, device=batch.device, dtype=batch.dtype))
        if math.prod(bg.shape[1:]) != n_features:
            raise InvalidInputError(
                f"wrong feature count: background has {math.prod(bg.shape[1:])} features, "
                f"inputs have {n_features}"
            )
        mean = bg.reshape(bg.shape[0], -1).mean(dim=0)
        return mean.reshape(1, *instance_shape).expand_as(batch).clone(), "mean"
    return torch.zeros_like(batch), "zeros"


def pick(outputs: torch.Tensor, targets: Sequence[int]) -> torch.Tensor:
    """The output at each row's target: ``outputs[i, targets[i]]``."""
    index = torch.as_tensor(list(targets), device=outputs.device, dtype=torch.long)
    return outputs.gather(1, index.unsqueeze(1)).squeeze(1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
