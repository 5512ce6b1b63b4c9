"""The model replica: loads a registry version and answers batched predictions.

Requests are merged by ``@serve.batch`` (dynamic batching) into one forward pass.
``reconfigure`` (Serve ``user_config``) switches the served version without a restart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray import serve

from inhouse.config import SettingsPayload
from serve.versioned import VersionedModel


@serve.deployment(name="model", ray_actor_options={"num_cpus": 0.5})
class ModelReplica(VersionedModel):
    """Serves one model (the version named by ``ref``, default the champion)."""

    def __init__(self, model: str, settings: SettingsPayload, ref: str = "champion") -> None:
        self._init_model(model, settings, ref)
        self._batching = self._settings.serve.max_batch_size > 1
        self.predict_batch.set_max_batch_size(self._settings.serve.max_batch_size)
        self.predict_batch.set_batch_wait_timeout_s(self._settings.serve.batch_wait_timeout_s)

    def metadata(self) -> dict[str, Any]:
        return self._model_metadata()

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def predict_batch(
        self, requests: list[tuple[np.ndarray, torch.nn.Module]]
    ) -> list[np.ndarray]:
        """One forward pass per module in the batch (champion, and the canary's share)."""
        results: list[np.ndarray | None] = [None] * len(requests)
        modules = {id(module): module for _, module in requests}
        for key, module in modules.items():
            picked = [i for i, (_, m) in enumerate(requests) if id(m) == key]
            merged = torch.from_numpy(np.concatenate([requests[i][0] for i in picked], axis=0))
            with torch.inference_mode():
                probabilities = torch.softmax(module(merged), dim=1).numpy()
            sizes = [len(requests[i][0]) for i in picked]
            for i, part in zip(picked, np.split(probabilities, np.cumsum(sizes)[:-1]), strict=True):
                results[i] = part
        return [r for r in results if r is not None]

    async def predict(self, x: np.ndarray, candidate: int | None = None) -> dict[str, Any]:
        """Class probabilities for a ``(n, features)`` float32 batch, with the version used:
        the canary ``candidate`` when it is given and loaded here, else the champion."""
        info, module = self._served(candidate)
        self._check_width(x, info)
        x = x.astype(np.float32, copy=False)
        if self._batching:
            probabilities = await self.predict_batch((x, module))
        else:  # no queue, no wait: one request, one forward pass
            with torch.inference_mode():
                probabilities = torch.softmax(module(torch.from_numpy(x)), dim=1).numpy()
        return {"probabilities": probabilities, "version": info.version}
