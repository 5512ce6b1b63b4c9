"""The module an LLM spec describes, and the spec of an imported causal LM.

:func:`build` makes the Hugging Face causal LM of ``spec["config"]`` (float32, eval mode) with
a uint8 buffer ``tokenizer_json`` sized for the stored tokenizer: weights and tokenizer load
together from the version's one artifact. :func:`llm_spec` writes the spec on import;
:func:`tokenizer_of` turns the buffer back into a fast tokenizer, checked against the spec.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from inhouse.errors import IntegrityError, InvalidInputError
from inhouse.kinds.llm import LLM_ARCH
from inhouse.models.text import config_dict, quiet_transformers, tokenizer_bytes

ROLES = ("base", "int8")
TOKENIZER_BUFFER = "tokenizer_json"
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token")
#: Config keys that describe where or how a checkpoint was stored, not the model.
DROPPED_CONFIG_KEYS = ("quantization_config", "_model_name_or_path", "_name_or_path")


def hf_config(config: Mapping[str, Any]) -> Any:
    """A transformers config from its JSON document."""
    from transformers import AutoConfig

    document = {k: v for k, v in config.items() if k not in DROPPED_CONFIG_KEYS}
    model_type = document.pop("model_type", None)
    try:
        return AutoConfig.for_model(model_type, **document)
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"LLM spec has an unusable config: {exc}") from exc


def attach_tokenizer(module: nn.Module, blob: bytes | int) -> nn.Module:
    """Give ``module`` the ``tokenizer_json`` buffer: ``blob``'s bytes, or that many zeros."""
    if isinstance(blob, int):
        buffer = torch.zeros(blob, dtype=torch.uint8)
    else:
        buffer = torch.frombuffer(bytearray(blob), dtype=torch.uint8).clone()
    module.register_buffer(TOKENIZER_BUFFER, buffer)
    return module


def build(spec: Mapping[str, Any]) -> nn.Module:
    """The (randomly initialised) float32 causal LM of ``spec``, with its tokenizer buffer."""
    if spec.get("role") not in ROLES:
        raise IntegrityError(f"LLM spec has unknown role {spec.get('role')!r}")
    quiet_transformers()
    from transformers import AutoModelForCausalLM

    config = hf_config(spec["config"])
    module = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    return attach_tokenizer(module, int(spec["tokenizer"]["bytes"])).eval()


def tokenizer_of(module: nn.Module, spec: Mapping[str, Any]) -> Any:
    """The fast tokenizer ``module`` carries, with the spec's special tokens and chat template."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    buffer = getattr(module, TOKENIZER_BUFFER, None)
    if not isinstance(buffer, torch.Tensor):
        raise IntegrityError("the LLM module carries no tokenizer")
    blob = bytes(buffer.cpu().numpy().tobytes())
    if hashlib.sha256(blob).hexdigest() != spec["tokenizer"]["sha256"]:
        raise IntegrityError("the tokenizer inside the model does not match its spec")
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=Tokenizer.from_str(blob.decode("utf-8")),
        model_max_length=int(spec["context_length"]),
        **spec["tokenizer"]["special_tokens"],
    )
    tokenizer.chat_template = spec.get("chat_template")
    return tokenizer


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    values = value if isinstance(value, list | tuple) else [value]
    return [int(v) for v in values]


def eos_ids(config: Any, generation: Mapping[str, Any], tokenizer: Any) -> list[int]:
    """Every id that ends a sequence: the generation config's, the model's, the tokenizer's."""
    found = (
        _ids(generation.get("eos_token_id"))
        + _ids(getattr(config, "eos_token_id", None))
        + _ids(getattr(tokenizer, "eos_token_id", None))
    )
    ordered = list(dict.fromkeys(found))
    if not ordered:
        raise InvalidInputError("the model names no end-of-sequence token (eos_token_id)")
    return ordered


def generation_dict(generation_config: Any) -> dict[str, Any]:
    """The generation config's non-default settings as JSON (no version stamp)."""
    document = json.loads(json.dumps(generation_config.to_diff_dict()))
    for key in ("transformers_version", "_from_model_config"):
        document.pop(key, None)
    return dict(document)


def llm_spec(
    module: nn.Module, *, tokenizer: Any, generation: dict[str, Any], context_length: int
) -> dict[str, Any]:
    """The spec of an imported float causal LM carrying ``tokenizer`` in its buffer."""
    blob = tokenizer_bytes(tokenizer)
    config: Any = module.config
    special = {k: getattr(tokenizer, k) for k in SPECIAL_TOKENS if getattr(tokenizer, k, None)}
    document = {k: v for k, v in config_dict(config).items() if k not in DROPPED_CONFIG_KEYS}
    document["dtype"] = "float32"
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # named templates: the default one serves chat
        template = template.get("default")
    return {
        "kind": LLM_ARCH,
        "role": "base",
        "input": "text",
        "architecture": type(module).__name__,
        "config": document,
        "tokenizer": {
            "bytes": len(blob),
            "sha256": hashlib.sha256(blob).hexdigest(),
            "special_tokens": special,
        },
        "chat_template": template if isinstance(template, str) else None,
        "generation_config": generation,
        "eos_token_ids": eos_ids(config, generation, tokenizer),
        "context_length": int(context_length),
        "parameters": sum(p.numel() for p in module.parameters()),
    }
