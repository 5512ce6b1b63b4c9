"""The text model replica: tokenises inside, batches requests, runs the int8 model, and holds
fine-tuned variants of its base model on demand (model multiplexing).

The served version is the registry's ``champion`` (the int8 version when it passed its gate).
A request that carries a multiplexed model id (the ``serve_multiplexed_model_id`` header, passed
on by the ingress) is answered by that variant: an adapter registered against this base, loaded
on first use (merged into its base and quantized to int8), kept in an LRU of
``MAX_VARIANTS`` per replica; Serve routes later requests for it to a replica that has it.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ray import serve
from torch import nn

from inhouse import services
from inhouse.compress import Int8Embedding, Int8Linear, quantize_linears
from inhouse.config import load_settings
from inhouse.errors import InvalidInputError, ModelNotFoundError
from inhouse.models.lora import float_version, load_text
from inhouse.models.text import encode_texts
from inhouse.registry import ModelVersion, Registry
from serve.versioned import follow_alias, pinned

MAX_VARIANTS = 4


@dataclass(frozen=True)
class Served:
    """One runnable text model: module, tokenizer, spec, and which version it is."""

    module: nn.Module
    tokenizer: Any
    spec: dict[str, Any]
    model: str
    version: int
    precision: str

    @torch.inference_mode()
    def probabilities(self, texts: list[str]) -> np.ndarray:
        ids, mask = encode_texts(self.tokenizer, texts, max_length=int(self.spec["max_length"]))
        return torch.softmax(self.module(ids, mask).float(), dim=-1).numpy()


def _int8(module: nn.Module) -> bool:
    return any(isinstance(m, (Int8Linear, Int8Embedding)) for m in module.modules())


def load_served(registry: Registry, info: ModelVersion, *, quantize: bool) -> Served:
    """Load a text version; a float adapter merge is quantized to int8 when ``quantize``."""
    module, tokenizer, spec = load_text(registry, info)
    if spec.get("role") == "encoder":
        raise InvalidInputError(f"{info.model} v{info.version} is an encoder without a head")
    if quantize and not _int8(module):
        quantize_linears(module)
    precision = "int8" if _int8(module) else "fp32"
    return Served(module.eval(), tokenizer, spec, info.model, info.version, precision)


def variant_base(registry: Registry, info: ModelVersion) -> str:
    """The model name an adapter version was trained against (its base's own base included)."""
    if info.spec.get("role") != "adapter":
        raise InvalidInputError(f"{info.model} is not an adapter; only adapters are multiplexed")
    base = registry.get(info.spec["base"]["model"], str(info.spec["base"]["version"]))
    return base.model


@serve.deployment(name="text-model", ray_actor_options={"num_cpus": 0.5})
class TextReplica:
    """Serves one text model (``ref``, default the champion) and its multiplexed variants."""

    def __init__(self, model: str, settings: dict[str, Any], ref: str = "champion") -> None:
        torch.set_num_threads(1)
        self._settings = load_settings(**settings)
        self._registry = services.registry(self._settings)
        self._model_name = model
        self._ref = ref
        self._served = self._load(ref)
        # Promotions and rollbacks of the alias reach this replica within a second.
        threading.Thread(
            target=follow_alias, args=(self._refresh,), daemon=True, name="follow-alias"
        ).start()
        serve_cfg = self._settings.serve
        self._batching = serve_cfg.max_batch_size > 1
        self.predict_batch.set_max_batch_size(serve_cfg.max_batch_size)
        self.predict_batch.set_batch_wait_timeout_s(serve_cfg.batch_wait_timeout_s)

    def _load(self, ref: str) -> Served:
        info = self._registry.get(self._model_name, ref)
        if info.spec.get("kind") != "hf_text":
            raise InvalidInputError(f"{self._model_name} is not a text model")
        return load_served(self._registry, info, quantize=info.spec.get("role") == "adapter")

    def _refresh(self) -> None:
        if not pinned(self._ref):
            if self._registry.resolve(self._model_name, self._ref) != self._served.version:
                self._served = self._load(self._ref)  # the old one answers until the swap

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve a different version: ``{"ref": "champion" | "<n>"}``."""
        self._ref = str(user_config.get("ref", "champion"))
        if self._ref != str(self._served.version):
            self._served = self._load(self._ref)

    def metadata(self) -> dict[str, Any]:
        spec = self._served.spec
        return {
            "model": self._model_name,
            "version": self._served.version,
            "input": "text",
            "n_features": 0,
            "n_classes": int(spec["num_classes"]),
            "class_names": list(spec["class_names"]),
            "max_length": int(spec["max_length"]),
            "precision": self._served.precision,
        }

    @serve.multiplexed(max_num_models_per_replica=MAX_VARIANTS)
    async def get_variant(self, model_id: str) -> Served:
        """Load variant ``model_id`` (an adapter registered against this model) on demand."""
        try:
            info = self._registry.get(model_id, "champion")
        except (ModelNotFoundError, InvalidInputError):
            raise ModelNotFoundError(f"variant {model_id!r} is not registered") from None
        served_base = float_version(
            self._registry, self._registry.get(self._model_name, str(self._served.version))
        )
        if variant_base(self._registry, info) != served_base.model:
            raise InvalidInputError(f"{model_id} is not a variant of {self._model_name}")
        return await asyncio.to_thread(load_served, self._registry, info, quantize=True)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def predict_batch(self, batches: list[list[str]]) -> list[np.ndarray]:
        sizes = [len(b) for b in batches]
        merged = [text for batch in batches for text in batch]
        probabilities = self._served.probabilities(merged)
        return list(np.split(probabilities, np.cumsum(sizes)[:-1]))

    async def predict(self, texts: list[str]) -> dict[str, Any]:
        """Class probabilities of ``texts``, with the model and version that answered."""
        variant = serve.get_multiplexed_model_id()
        if variant:
            served = await self.get_variant(variant)
            probabilities = served.probabilities(texts)
        else:
            served = self._served
            if self._batching:
                probabilities = await self.predict_batch(texts)
            else:
                probabilities = served.probabilities(texts)
        return {
            "probabilities": probabilities,
            "version": served.version,
            "model": served.model,
            "class_names": list(served.spec["class_names"]),
        }
