"""An LLM version ready to generate: the module (eval, no gradients), its tokenizer, its limits.

:func:`load_llm` decrypts a version in memory: a ``base`` version through
:func:`inhouse.kinds.load_module` (float32; bf16 on CUDA), an ``int8`` one through
:func:`inhouse.kinds.llm.quantize.load_quantized_module` (CPU). :class:`LoadedLLM` turns chat
messages or plain text into prompt token ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from inhouse.errors import InvalidInputError
from inhouse.kinds.llm import LLM_ARCH
from inhouse.registry import ModelVersion, Registry


@dataclass
class LoadedLLM:
    """A runnable LLM version and what generation needs to know about it."""

    model: str
    version: int
    module: nn.Module
    tokenizer: Any  # a transformers fast tokenizer
    spec: dict[str, Any]
    context_length: int
    eos_token_ids: tuple[int, ...]
    device: torch.device

    def chat_prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The prompt of a chat: the model's chat template with the assistant's turn opened;
        a model without a template gets one ``role: content`` line per message."""
        if self.tokenizer.chat_template:
            from jinja2 import TemplateError

            try:
                text = self.tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=False
                )
            except TemplateError as exc:  # e.g. a template that refuses the role order
                raise InvalidInputError(f"the model's chat template refused: {exc}") from None
            return self._encode(str(text), special=False)
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return self._encode("\n".join([*lines, "assistant:"]), special=True)

    def prompt_ids(self, text: str) -> list[int]:
        """The token ids of a plain-text prompt (with the tokenizer's own special tokens)."""
        return self._encode(text, special=True)

    def _encode(self, text: str, *, special: bool) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=special)["input_ids"]
        return [int(i) for i in ids]


def _place(module: nn.Module, device: torch.device) -> nn.Module:
    if device.type == "cuda":
        return module.to(device=device, dtype=torch.bfloat16)
    return module.to(device)


def _generation_config(module: Any, spec: Mapping[str, Any]) -> None:
    if hasattr(module, "generation_config"):
        from transformers import GenerationConfig

        settings = spec.get("generation_config", {})
        module.generation_config = GenerationConfig(**settings)  # type: ignore[no-untyped-call]


def load_llm(registry: Registry, info: ModelVersion, *, device: str | None = None) -> LoadedLLM:
    """The runnable module of an LLM version and its tokenizer.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default CUDA when there is one (bf16),
            else CPU. An ``int8`` version runs on the CPU.

    Raises:
        InvalidInputError: the version is not an LLM.
        IntegrityError: its weights or tokenizer do not match its spec.
    """
    from inhouse.kinds.llm.model import tokenizer_of

    spec = info.spec
    if spec.get("kind") != LLM_ARCH:
        raise InvalidInputError(
            f"{info.model} v{info.version} is not a generative LLM (kind {spec.get('kind')!r})"
        )
    if spec.get("role") == "int8":
        from inhouse.kinds.llm.quantize import load_quantized_module

        module = load_quantized_module(registry, info)
        target = torch.device(device or "cpu")
    else:
        from inhouse.kinds.modules import load_module

        module = load_module(registry, info)
        target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = tokenizer_of(module, spec)
    module = _place(module, target) if spec.get("role") != "int8" else module.to(target)
    _generation_config(module, spec)
    module.eval().requires_grad_(False)
    return LoadedLLM(
        model=info.model,
        version=info.version,
        module=module,
        tokenizer=tokenizer,
        spec=dict(spec),
        context_length=int(spec["context_length"]),
        eos_token_ids=tuple(int(i) for i in spec["eos_token_ids"]),
        device=target,
    )
