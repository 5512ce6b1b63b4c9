"""The model replica: loads a registry version and answers batched predictions.

Requests are merged by ``@serve.batch`` (dynamic batching) into one forward pass.
``reconfigure`` (Serve ``user_config``) switches the served version without a restart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray import serve

from serve.versioned import VersionedModel


@serve.deployment(name="model", ray_actor_options={"num_cpus": 0.5})
class ModelReplica(VersionedModel):
    """Serves one model (the version named by ``ref``, default the champion)."""

    def __init__(self, model: str, settings: dict[str, Any], ref: str = "champion") -> None:
        self._init_model(model, settings, ref)
        self._batching = self._settings.serve.max_batch_size > 1
        self.predict_batch.set_max_batch_size(self._settings.serve.max_batch_size)
        self.predict_batch.set_batch_wait_timeout_s(self._settings.serve.batch_wait_timeout_s)

    def metadata(self) -> dict[str, Any]:
        return self._model_metadata()

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def predict_batch(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        sizes = [len(b) for b in batches]
        merged = torch.from_numpy(np.concatenate(batches, axis=0))
        with torch.inference_mode():
            probabilities = torch.softmax(self._module(merged), dim=1).numpy()
        return list(np.split(probabilities, np.cumsum(sizes)[:-1]))

    async def predict(self, x: np.ndarray) -> dict[str, Any]:
        """Class probabilities for a ``(n, features)`` float32 batch, with the version used."""
        self._check_width(x, self._info)
        version = self._info.version
        x = x.astype(np.float32, copy=False)
        if self._batching:
            probabilities = await self.predict_batch(x)
        else:  # no queue, no wait: one request, one forward pass
            with torch.inference_mode():
                probabilities = torch.softmax(self._module(torch.from_numpy(x)), dim=1).numpy()
        return {"probabilities": probabilities, "version": version}
