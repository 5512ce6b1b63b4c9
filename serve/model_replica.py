"""The model replica: loads a registry version and answers batched predictions.

Requests are merged by ``@serve.batch`` (dynamic batching) into one forward pass.
``reconfigure`` (Serve ``user_config``) switches the served version without a restart.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import torch
from ray import serve

from inhouse import services
from inhouse.config import load_settings
from inhouse.errors import InvalidInputError


@serve.deployment(name="model", ray_actor_options={"num_cpus": 0.5})
class ModelReplica:
    """Serves one model (the version named by ``ref``, default the champion)."""

    def __init__(self, model: str, settings: dict[str, Any], ref: str = "champion") -> None:
        torch.set_num_threads(1)
        self._settings = load_settings(**settings)
        self._registry = services.registry(self._settings)
        self._model_name = model
        self._load(ref)
        self.predict_batch.set_max_batch_size(self._settings.serve.max_batch_size)
        self.predict_batch.set_batch_wait_timeout_s(self._settings.serve.batch_wait_timeout_s)

    def _load(self, ref: str) -> None:
        info = self._registry.get(self._model_name, ref)
        self._module = self._registry.load_module(info)
        self._info = info

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve a different version: ``{"ref": "champion" | "<n>"}``."""
        ref = str(user_config.get("ref", "champion"))
        if ref != str(self._info.version):
            self._load(ref)

    def metadata(self) -> dict[str, Any]:
        spec = self._info.spec
        return {
            "model": self._model_name,
            "version": self._info.version,
            "n_features": int(spec["input_dim"]),
            "n_classes": int(spec["num_classes"]),
            "class_names": list(spec.get("class_names", [])),
            "feature_names": list(spec.get("feature_names", [])),
        }

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def predict_batch(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        sizes = [len(b) for b in batches]
        merged = torch.from_numpy(np.concatenate(batches, axis=0))
        with torch.inference_mode():
            probabilities = torch.softmax(self._module(merged), dim=1).numpy()
        return list(np.split(probabilities, np.cumsum(sizes)[:-1]))

    async def predict(self, x: np.ndarray) -> dict[str, Any]:
        """Class probabilities for a ``(n, features)`` float32 batch, with the version used."""
        expected = int(self._info.spec["input_dim"])
        if x.ndim != 2 or x.shape[1] != expected:
            raise InvalidInputError(f"expected shape [n, {expected}], got {list(x.shape)}")
        version = self._info.version
        probabilities = await self.predict_batch(x.astype(np.float32, copy=False))
        return {"probabilities": probabilities, "version": version}

    async def predict_unbatched(self, x: np.ndarray) -> dict[str, Any]:
        """The same without dynamic batching (the benchmark's baseline)."""
        with torch.inference_mode():
            out = torch.softmax(self._module(torch.from_numpy(x)), dim=1).numpy()
        await asyncio.sleep(0)
        return {"probabilities": out, "version": self._info.version}
