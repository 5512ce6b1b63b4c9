"""The model a text fine-tuning run starts from: a local Hugging Face directory or a registered
version, with the incremental method (head-only, LoRA) applied."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from inhouse.config import Settings, TextTrainOptions
from inhouse.errors import InvalidInputError


def start_model(
    settings: Settings, options: TextTrainOptions, class_names: list[str]
) -> tuple[nn.Module, Any, dict[str, Any], Any]:
    """``(model, tokenizer, spec, base_version)`` a run starts from, method applied.

    The seed is set first so every worker draws the same new head.
    """
    from inhouse import services
    from inhouse.kinds.text.versions import load_text
    from inhouse.models.hf import classifier_from_dir
    from inhouse.models.lora import lora_config, prepare_incremental
    from inhouse.models.text import classifier_from
    from inhouse.registry import float_version

    torch.manual_seed(options.seed)
    base = None
    if options.model_dir is not None:
        model, tokenizer, spec = classifier_from_dir(
            options.model_dir, class_names=class_names, max_length=options.max_length
        )
    else:
        name, _, ref = str(options.base).partition(":")
        registry = services.registry(settings)
        base = float_version(registry, registry.get(name, ref or "champion"))
        if base.spec.get("role") == "adapter":
            raise InvalidInputError(f"{name} v{base.version} is an adapter; name its base instead")
        start, tokenizer, base_spec = load_text(registry, base)
        torch.manual_seed(options.seed)
        model, spec = classifier_from(
            start, base_spec, class_names=class_names, max_length=options.max_length
        )
    if options.method != "full":
        prepare_incremental(
            model, options.method, lora=lora_config(r=options.lora_r, alpha=options.lora_alpha)
        )
    if options.gradient_checkpointing:
        hf: Any = getattr(model, "hf")
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, tokenizer, spec, base  # DP: the driver checks the layers (private.py)
