"""Text versions in the registry: import a model directory, register an adapter, load any one.

:func:`import_model_dir` stores a Hugging Face directory as an ``encoder`` version;
:func:`register_adapter` stores the trained adapter of a model (head, or LoRA + head) against
its base version; :func:`load_text` turns any text version (encoder, classifier, int8
classifier, adapter) into a runnable module and its tokenizer; an adapter is merged into its
base's weights, so it serves at the base's speed.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import torch

from inhouse.errors import IntegrityError, InvalidInputError
from inhouse.kinds.modules import load_module, register_module
from inhouse.models.hf import ModelDir, check_model_dir, load_pretrained, load_tokenizer
from inhouse.models.lora import adapter_state, peft_model
from inhouse.models.text import (
    TEXT_ARCH,
    AdapterWeights,
    TextModel,
    classifier_from,
    text_spec,
    tokenizer_bytes,
    tokenizer_from,
)
from inhouse.registry import ModelVersion, Registry, float_version


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
    return register_module(
        registry, name, module=AdapterWeights.of(state), spec=spec, metrics=metrics, lineage=lineage
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
        module = load_module(registry, info)
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
    weights = {k: v for k, v in load_module(registry, info).state_dict().items()}
    if spec["method"] == "lora":
        from peft import set_peft_model_state_dict

        wrapped = peft_model(model.hf, spec["lora"])
        result: Any = set_peft_model_state_dict(wrapped, weights)
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        if unexpected:
            raise IntegrityError(f"adapter does not fit its base: {unexpected[:3]}")
        model.hf = wrapped.merge_and_unload()
    else:
        missing = set(weights) - set(model.hf.state_dict())
        if missing:
            raise IntegrityError(f"adapter does not fit its base: {sorted(missing)[:3]}")
        model.hf.load_state_dict(weights, strict=False)
    return model.eval(), tokenizer, spec


def import_model_dir(
    registry: Registry, path: str | os.PathLike[str], *, name: str, max_length: int = 128
) -> ModelVersion:
    """Copy a model directory into the registry as a new ``encoder`` version of ``name``.

    Weights and tokenizer become one artifact, encrypted when the registry has a key ring;
    the lineage records each source file's SHA-256. Returns the ``ModelVersion``.
    """
    checked = check_model_dir(path)
    limit = int(checked.config.get("max_position_embeddings") or 512)
    tokenizer = load_tokenizer(checked.path)
    model = TextModel(load_pretrained(checked.path), tokenizer_bytes(tokenizer))
    spec = text_spec(model, tokenizer=tokenizer, role="encoder", max_length=min(max_length, limit))
    lineage = {"source": source_lineage(checked), "parent": None}
    metrics = {"parameters": sum(p.numel() for p in model.hf.parameters())}
    return register_module(
        registry, name, module=model, spec=spec, metrics=metrics, lineage=lineage
    )


def source_lineage(checked: ModelDir) -> dict[str, Any]:
    """Where an imported directory came from: its path and each weight and JSON file's SHA-256."""
    digests = {
        file.name: hashlib.sha256(file.read_bytes()).hexdigest()
        for file in sorted(checked.path.iterdir())
        if file.is_file() and (file.name in checked.weight_files or file.suffix == ".json")
    }
    return {"kind": "huggingface_dir", "path": str(checked.path), "files": digests}
