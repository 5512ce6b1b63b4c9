"""Incremental updates of text classifiers: head-only or LoRA adapters (``peft``), versioned
in the registry against their base model.

A retrain that touches a small fraction of the parameters stores only those: an ``adapter``
version holds the head (``head``) or the LoRA matrices and the head (``lora``), and its spec
and lineage name the base version it applies to. :func:`load_text` turns any text version
(encoder, classifier, int8 classifier, adapter) into a runnable module and its tokenizer; an
adapter is merged into its base's weights, so it serves at the base's speed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from inhouse.errors import IntegrityError, InvalidInputError
from inhouse.models.text import TEXT_ARCH, TextModel, classifier_from, tokenizer_from
from inhouse.registry import ModelVersion, Registry, float_version

METHODS = ("head", "lora")
DEFAULT_TARGETS = ("query", "value")


class AdapterWeights(nn.Module):
    """A bag of tensors whose state-dict keys are the adapter's own (dotted) names."""

    def __init__(self, shapes: dict[str, list[int]]) -> None:
        super().__init__()
        for key, shape in shapes.items():
            *path, leaf = key.split(".")
            parent: nn.Module = self
            for part in path:
                child = parent._modules.get(part)
                if child is None:
                    child = nn.Module()
                    parent.add_module(part, child)
                parent = child
            parent.register_buffer(leaf, torch.zeros(shape, dtype=torch.float32))

    @classmethod
    def of(cls, state: dict[str, torch.Tensor]) -> AdapterWeights:
        bag = cls({k: list(v.shape) for k, v in state.items()})
        bag.load_state_dict({k: v.detach().float().cpu() for k, v in state.items()})
        return bag


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


def _peft(hf: nn.Module, settings: dict[str, Any]) -> Any:
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
        model.hf = _peft(model.hf, lora or lora_config())
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


def adapter_spec(
    base: ModelVersion,
    *,
    method: str,
    state: dict[str, torch.Tensor],
    lora: dict[str, Any] | None,
    class_names: list[str],
    max_length: int,
) -> dict[str, Any]:
    """The spec of an adapter version against ``base`` (a float text version)."""
    return {
        "kind": TEXT_ARCH,
        "role": "adapter",
        "input": "text",
        "method": method,
        "lora": lora if method == "lora" else None,
        "base": {"model": base.model, "version": base.version},
        "tensors": {k: list(v.shape) for k, v in state.items()},
        "class_names": list(class_names),
        "num_classes": len(class_names),
        "max_length": int(max_length),
    }


def register_adapter(
    registry: Registry,
    name: str,
    *,
    model: TextModel,
    method: str,
    base: ModelVersion,
    class_names: list[str],
    max_length: int,
    lora: dict[str, Any] | None = None,
    metrics: dict[str, Any],
    lineage: dict[str, Any],
) -> ModelVersion:
    """Register the trained adapter of ``model`` as a new version of ``name``."""
    state = adapter_state(model, method)
    spec = adapter_spec(
        base, method=method, state=state, lora=lora, class_names=class_names, max_length=max_length
    )
    lineage = {
        **lineage,
        "base": {"model": base.model, "version": base.version},
        "parent": lineage.get("parent") or {"model": base.model, "version": base.version},
    }
    return registry.register(
        name, module=AdapterWeights.of(state), spec=spec, metrics=metrics, lineage=lineage
    )


def _check_text(info: ModelVersion) -> None:
    if info.spec.get("kind") != TEXT_ARCH:
        raise InvalidInputError(f"{info.model} v{info.version} is not a text model")


def load_text(registry: Registry, info: ModelVersion) -> tuple[TextModel, Any, dict[str, Any]]:
    """A runnable text module (eval mode), its tokenizer and the spec it runs under.

    An adapter is applied to (merged into) its base version's weights.
    """
    _check_text(info)
    if info.spec["role"] != "adapter":
        module = registry.load_module(info)
        if not isinstance(module, TextModel):
            raise IntegrityError(f"{info.model} v{info.version} did not load as a text model")
        return module, tokenizer_from(module, info.spec), info.spec
    spec = info.spec
    base_info = registry.get(spec["base"]["model"], str(spec["base"]["version"]))
    if base_info.spec.get("role") == "adapter":
        raise IntegrityError("an adapter's base must not be an adapter")
    base, tokenizer, base_spec = load_text(registry, float_version(registry, base_info))
    model, _ = classifier_from(
        base, base_spec, class_names=spec["class_names"], max_length=int(spec["max_length"])
    )
    weights = {k: v for k, v in registry.load_module(info).state_dict().items()}
    if spec["method"] == "lora":
        from peft import set_peft_model_state_dict

        peft_model = _peft(model.hf, spec["lora"])
        result: Any = set_peft_model_state_dict(peft_model, weights)
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        if unexpected:
            raise IntegrityError(f"adapter does not fit its base: {unexpected[:3]}")
        model.hf = peft_model.merge_and_unload()
    else:
        missing = set(weights) - set(model.hf.state_dict())
        if missing:
            raise IntegrityError(f"adapter does not fit its base: {sorted(missing)[:3]}")
        model.hf.load_state_dict(weights, strict=False)
    return model.eval(), tokenizer, spec
