"""The explainer sidecar: per-model explanations in their own deployment, beside the replicas.

Explanations cost tens to thousands of forward passes, so they run in a deployment of their
own (own replicas, own autoscaling via ``.options()``) and never queue behind or slow down
predictions. It loads the same registry version as :class:`serve.model_replica.ModelReplica`
and follows it through ``reconfigure``. The Captum work runs in a worker thread, one at a time
per replica, so the replica's event loop keeps answering ``metadata`` and health checks.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from ray import serve

from inhouse.config import SettingsPayload
from inhouse.explain import Explanation
from inhouse.explain.request import (
    explanation_png,
    explanation_response,
    mean_is_public,
    run_explanation,
    server_limits,
)
from inhouse.registry import ModelVersion
from serve.versioned import VersionedModel


@serve.deployment(name="explainer", ray_actor_options={"num_cpus": 0.5})
class Explainer(VersionedModel):
    """Explains one model's predictions (the version named by ``ref``, default the champion)."""

    def __init__(self, model: str, settings: SettingsPayload, ref: str = "champion") -> None:
        self._init_model(model, settings, ref)
        # Server-side limits only: a request body can never raise them.
        self._limits = server_limits(max_instances=self._settings.serve.max_instances)
        # One explanation at a time per replica: the work is CPU-bound and the replica has
        # half a core; more replicas (autoscaling) is how throughput grows.
        self._busy = asyncio.Semaphore(1)

    def metadata(self) -> dict[str, Any]:
        """Model name, served version, input width, class and feature names."""
        return {
            **self._model_metadata(),
            "methods": ["ig", "lime", "shap"],
            "limits": self._limits.model_dump(),
        }

    async def _explain(
        self, x: np.ndarray, method: str, target: int | None, options: dict[str, Any]
    ) -> tuple[Explanation, ModelVersion]:
        # Take the module and its version together: a reconfigure during the work must not
        # label one version's explanation with another's number.
        module, info = self._module, self._info
        self._check_width(x, info)
        async with self._busy:
            explanation = await asyncio.to_thread(
                run_explanation,
                module,
                x,
                method=method,
                target=target,
                options=options,
                feature_names=info.spec.get("feature_names") or None,
                limits=self._limits,
                # a non-DP version's mean is a statistic of its rows: not for predict tokens
                training_mean_allowed=mean_is_public(info.lineage),
            )
        return explanation, info

    async def explain(
        self, x: np.ndarray, method: str, target: int | None, options: dict[str, Any]
    ) -> dict[str, Any]:
        """Attributions of each row of ``x`` as the JSON body of a v1 ``:explain`` answer."""
        explanation, info = await self._explain(x, method, target, options)
        return explanation_response(
            explanation,
            model=self._model_name,
            version=info.version,
            class_names=list(info.spec.get("class_names", [])),
        )

    async def explain_png(
        self, x: np.ndarray, method: str, target: int | None, options: dict[str, Any]
    ) -> bytes:
        """PNG of the first row's explanation (8x8 heat map for digits, else a bar chart)."""
        first = np.ascontiguousarray(x[:1])
        explanation, info = await self._explain(first, method, target, options)
        class_names = list(info.spec.get("class_names", []))
        return await asyncio.to_thread(explanation_png, explanation, first, class_names=class_names)
