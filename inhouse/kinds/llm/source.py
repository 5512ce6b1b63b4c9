"""A local Hugging Face causal-LM directory, checked before anything is loaded or recorded.

On top of :func:`inhouse.models.hf.check_model_dir` (safetensors only, no remote code, a
tokenizer): the architecture is a causal LM built into transformers; the checkpoint is not
quantized (GPTQ, AWQ... need foreign kernels; a GGUF file is imported as such); and the weights
hold at least as many numbers as the config describes, read from the safetensors headers
alone, so a config that claims a far larger model than its files is refused before memory
is allocated for it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inhouse.errors import InvalidInputError
from inhouse.kinds.llm.model import hf_config
from inhouse.models.hf import ModelDir, check_model_dir
from inhouse.models.text import quiet_transformers

CHUNK = 1 << 20


def _causal_architecture(checked: ModelDir) -> str:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    named = checked.config.get("architectures") or []
    found = [a for a in named if isinstance(a, str) and a in causal]
    if checked.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or not found:
        raise InvalidInputError(
            f"{checked.path} is not a causal language model (model_type "
            f"{checked.model_type!r}, architectures {named}): the llm kind imports generative "
            "models such as LlamaForCausalLM (encoders are text models: --kind text)"
        )
    return found[0]


def _stored_numbers(checked: ModelDir) -> int:
    from safetensors import safe_open

    total = 0
    for name in checked.weight_files:
        try:
            with safe_open(str(checked.path / name), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 (a safe_open handle is not a dict)
                    shape = handle.get_slice(key).get_shape()
                    total += int(torch.Size(shape).numel())
        except Exception as exc:  # safetensors raises its own error types for bad files
            raise InvalidInputError(
                f"{checked.path / name} is not a readable safetensors file: {exc}"
            ) from None
    return total


def _described_numbers(config: dict[str, Any]) -> int:
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(hf_config(config))  # type: ignore[no-untyped-call]
    except Exception as exc:  # a config transformers cannot build a model from
        raise InvalidInputError(f"the model config cannot build a causal LM: {exc}") from None
    return sum(p.numel() for p in skeleton.parameters())


def check_causal_lm_dir(path: Path) -> ModelDir:
    """Check that ``path`` is a safe, complete, float causal-LM directory.

    Raises:
        InvalidInputError: naming what is missing or refused.
    """
    checked = check_model_dir(path)
    _causal_architecture(checked)
    quantization = checked.config.get("quantization_config")
    if isinstance(quantization, dict) and quantization.get("quant_method") not in (None, "gguf"):
        raise InvalidInputError(
            f"{checked.path} holds a {quantization.get('quant_method')}-quantized checkpoint: "
            "import its float (or GGUF) weights instead"
        )
    context = checked.config.get("max_position_embeddings")
    if not isinstance(context, int) or context < 1:
        raise InvalidInputError(
            f"{checked.path}/config.json: max_position_embeddings must be a positive integer, "
            f"not {context!r}"
        )
    described, stored = _described_numbers(checked.config), _stored_numbers(checked)
    if described > stored:
        raise InvalidInputError(
            f"{checked.path}: config.json describes {described:,} parameters but the weights "
            f"hold {stored:,}: the config does not belong to these weights"
        )
    return checked


def load_causal_lm(checked: ModelDir) -> nn.Module:
    """The float32 causal LM of a checked directory (offline, no remote code); every weight
    the model needs must be in the files."""
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    try:
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            str(checked.path),
            local_files_only=True,
            trust_remote_code=False,
            use_safetensors=True,
            dtype=torch.float32,
            output_loading_info=True,
        )
    except (RuntimeError, ValueError, OSError) as exc:  # shapes that differ from the config
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "mismatched" in reason:
            reason = "tensor shapes differ from what config.json describes"
        raise InvalidInputError(
            f"{checked.path}: the weights do not fit the config ({reason})"
        ) from None
    model, info = loaded
    tied = set(getattr(model, "_tied_weights_keys", None) or {})
    missing = [k for k in info.get("missing_keys", []) if k not in tied]
    mismatched = list(info.get("mismatched_keys", []))
    if missing or mismatched:
        raise InvalidInputError(
            f"{checked.path}: the weights do not fit the config "
            f"(missing {sorted(missing)[:3]}, wrong shape {mismatched[:3]})"
        )
    module: nn.Module = model.eval()
    return module


def sha256_files(paths: list[Path]) -> str:
    """SHA-256 of the files' bytes one after another (of one file: its own SHA-256)."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()
