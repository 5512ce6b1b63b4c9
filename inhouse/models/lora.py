"""Incremental updates of text classifiers: head-only or LoRA adapters (``peft``).

A retrain that touches a small fraction of the parameters stores only those: an ``adapter``
version holds the head (``head``) or the LoRA matrices and the head (``lora``)
(:func:`adapter_state`); :mod:`inhouse.kinds.text.versions` registers and loads them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from inhouse.errors import InvalidInputError
from inhouse.models.text import TextModel

METHODS = ("head", "lora")
DEFAULT_TARGETS = ("query", "value")


def _head_keys(hf: nn.Module) -> list[str]:
    prefix = f"{hf.base_model_prefix}."
    return [k for k in hf.state_dict() if not k.startswith(prefix)]


def lora_config(
    *,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    target_modules: Iterable[str] = DEFAULT_TARGETS,
) -> dict[str, Any]:
    """The LoRA settings stored in an adapter's spec (validated)."""
    if not 1 <= r <= 256:
        raise InvalidInputError(f"LoRA rank must be 1..256, not {r}")
    if not 0.0 <= dropout < 1.0:
        raise InvalidInputError(f"LoRA dropout must be in [0, 1), not {dropout}")
    return {
        "r": int(r),
        "alpha": int(alpha),
        "dropout": float(dropout),
        "target_modules": sorted(target_modules),
    }


def peft_model(hf: nn.Module, settings: dict[str, Any]) -> Any:
    """``hf`` wrapped with LoRA adapters of ``settings`` (:func:`lora_config`)."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=settings["r"],
        lora_alpha=settings["alpha"],
        lora_dropout=settings["dropout"],
        target_modules=list(settings["target_modules"]),
    )
    return get_peft_model(hf, config)


def prepare_incremental(
    model: TextModel, method: str, *, lora: dict[str, Any] | None = None
) -> TextModel:
    """Freeze what ``method`` keeps fixed (in place): only the head, or LoRA + head, train."""
    if method == "head":
        heads = set(_head_keys(model.hf))
        for name, param in model.hf.named_parameters():
            param.requires_grad_(name in heads)
    elif method == "lora":
        model.hf = peft_model(model.hf, lora or lora_config())
    else:
        raise InvalidInputError(f"incremental method must be one of {METHODS}, not {method!r}")
    return model


def trainable_fraction(model: nn.Module) -> float:
    """Share of parameters that receive gradients."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / max(total, 1)


def adapter_state(model: TextModel, method: str) -> dict[str, torch.Tensor]:
    """The tensors an adapter version stores: the head, or LoRA matrices and head."""
    if method == "lora":
        from peft import get_peft_model_state_dict

        state: dict[str, torch.Tensor] = get_peft_model_state_dict(model.hf)
        return {k: v.detach().cpu().float().contiguous() for k, v in state.items()}
    full = model.hf.state_dict()
    return {k: full[k].detach().cpu().float().contiguous() for k in _head_keys(model.hf)}
