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
from typing import Any

import numpy as np
import torch
from ray import serve

from inhouse import services
from inhouse.config import SettingsPayload
from inhouse.errors import InvalidInputError, ModelNotFoundError
from inhouse.models.lora import float_version
from inhouse.models.text_serving import Served, load_as_served, load_served
from inhouse.registry import ModelVersion, Registry
from serve.versioned import follow_alias, pinned

__all__ = ["TextReplica", "Served", "load_served", "variant_base"]

MAX_VARIANTS = 4


def variant_base(registry: Registry, info: ModelVersion) -> str:
    """The model name an adapter version was trained against (its base's own base included)."""
    if info.spec.get("role") != "adapter":
        raise InvalidInputError(f"{info.model} is not an adapter; only adapters are multiplexed")
    base = registry.get(info.spec["base"]["model"], str(info.spec["base"]["version"]))
    return base.model


@serve.deployment(name="text-model", ray_actor_options={"num_cpus": 0.5})
class TextReplica:
    """Serves one text model (``ref``, default the champion) and its multiplexed variants."""

    def __init__(self, model: str, settings: SettingsPayload, ref: str = "champion") -> None:
        torch.set_num_threads(1)
        self._settings = settings.load()
        self._registry = services.registry(self._settings)
        self._model_name = model
        self._ref = ref
        self._candidate: Served | None = None  # the canary's version while one runs
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
        held = self._candidate
        if held is not None and held.version == info.version:
            return held  # a promoted canary: already loaded
        return load_as_served(self._registry, info)

    def _refresh(self) -> None:
        if pinned(self._ref):
            return
        if self._registry.resolve(self._model_name, self._ref) != self._served.version:
            self._served = self._load(self._ref)  # the old one answers until the swap
        if self._ref == "champion":
            self._follow_candidate(self._registry.aliases(self._model_name).get("candidate"))

    def _follow_candidate(self, version: int | None) -> None:
        """Hold the canary's version beside the champion (drop it when the canary ends)."""
        if version is None or version == self._served.version:
            self._candidate = None
            return
        if self._candidate is None or self._candidate.version != version:
            info = self._registry.get(self._model_name, str(version))
            self._candidate = load_as_served(self._registry, info)

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

    async def predict(self, texts: list[str], candidate: int | None = None) -> dict[str, Any]:
        """Class probabilities of ``texts``, with the model and version that answered: a
        multiplexed variant when the request names one, the canary ``candidate`` when it is
        given and loaded here, else the champion (batched with other requests)."""
        variant = serve.get_multiplexed_model_id()
        held = self._candidate
        if variant:
            served = await self.get_variant(variant)
            probabilities = served.probabilities(texts)
        elif candidate is not None and held is not None and held.version == candidate:
            served = held
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
