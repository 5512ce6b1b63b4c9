"""The explainer sidecar: per-model explanations in their own deployment, beside the replicas.

Explanations cost tens to thousands of forward passes, so they run in a deployment of their
own (own replicas, own autoscaling via ``.options()``) and never queue behind or slow down
predictions. It follows the same registry version as
:class:`inhouse.serve.model_replica.ModelReplica` (loaded for explanation by the version's
kind: ``load_explained``). The work runs in a worker thread, one at a time per replica, so the
replica's event loop keeps answering health checks.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve

from inhouse.config import SettingsPayload
from inhouse.kinds import ModelKind
from inhouse.serve.versioned import VersionedModel


# A quarter of a logical CPU: the sidecar is idle between explanations, and on a 4-CPU laptop
# cluster two served models (replica, sidecar each) must still leave 2 CPUs for a 2-worker
# training job. Its work is serialised per replica either way.
@serve.deployment(name="explainer", ray_actor_options={"num_cpus": 0.25})
class Explainer(VersionedModel):
    """Explains one model's predictions (the version named by ``ref``, default the champion)."""

    holds_canary = False  # the ingress never sends explanations to a canary

    def __init__(self, model: str, settings: SettingsPayload, ref: str, kind: ModelKind) -> None:
        self._init_model(model, settings, ref, kind, loader=kind.serving.load_explained)
        # Server-side limits only: a request body can never raise them.
        self._max_instances = self._settings.serve.max_instances
        # One explanation at a time per replica: the work is CPU-bound and the replica has
        # half a core; more replicas (autoscaling) is how throughput grows.
        self._busy = asyncio.Semaphore(1)

    async def explain(self, call: Any) -> dict[str, Any]:
        """The JSON body of a v1 ``:explain`` answer to ``call`` (the kind's parsed request)."""
        # Take the loaded version once: a reconfigure during the work must not label one
        # version's explanation with another's number.
        loaded = self._loaded
        async with self._busy:
            answer: dict[str, Any] = await asyncio.to_thread(
                self._serving.explain, loaded, call, max_instances=self._max_instances
            )
        return answer

    async def explain_png(self, call: Any) -> bytes:
        """PNG of the first instance's explanation (8x8 heat map for digits, else a bar chart)."""
        loaded = self._loaded
        async with self._busy:
            png: bytes = await asyncio.to_thread(
                self._serving.explain_png, loaded, call, max_instances=self._max_instances
            )
        return png
