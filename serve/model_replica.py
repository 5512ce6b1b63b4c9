"""The model replica: holds a registry version of one model, loaded by its kind, and answers
batched predictions.

Requests are merged by ``@serve.batch`` (dynamic batching) into one call of the kind's
``predict`` per loaded version (the champion, and the canary's share). ``reconfigure`` (Serve
``user_config``) switches the served version without a restart. For kinds that have variants
(``ServingKind.multiplexed``), a request carrying a multiplexed model id (the
``serve_multiplexed_model_id`` header, passed on by the ingress) is answered by that variant,
loaded by the kind on first use and kept in an LRU of ``MAX_VARIANTS`` per replica; Serve
routes later requests for it to a replica that has it.

A kind that generates text (``ModelKind.generating``) is loaded by that part, within the
settings' ``llm`` limits, and answers :meth:`ModelReplica.generate`: a stream (Serve
streaming handle) whose first item is the prompt's size, then the answer's pieces. A consumer
that goes away (the client disconnected) cancels the stream, which stops the generation and
frees its place in the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any

from ray import serve

from inhouse.config import SettingsPayload
from inhouse.kinds import ModelKind
from inhouse.kinds.generating import GenerateCall, Generated
from inhouse.serve.versioned import VersionedModel

MAX_VARIANTS = 4


@serve.deployment(name="model", ray_actor_options={"num_cpus": 0.5})
class ModelReplica(VersionedModel):
    """Serves one model (the version named by ``ref``, default the champion)."""

    def __init__(self, model: str, settings: SettingsPayload, ref: str, kind: ModelKind) -> None:
        self._init_model(model, settings, ref, kind, loader=_loader(kind, settings))
        serve_cfg = self._settings.serve
        self._batching = serve_cfg.max_batch_size > 1
        self.predict_batch.set_max_batch_size(serve_cfg.max_batch_size)
        self.predict_batch.set_batch_wait_timeout_s(serve_cfg.batch_wait_timeout_s)

    async def generate(self, call: GenerateCall) -> AsyncIterator[dict[str, Any] | Generated]:
        """Stream the answer to ``call``: first ``{"model", "version", "prompt_tokens"}``
        (the request was accepted), then the kind's :class:`Generated` pieces."""
        generating = self._kind.generating
        loaded = self._loaded  # one version for the whole answer, even across a switch
        prepared = await asyncio.to_thread(generating.prepare, loaded, call)
        yield {
            "model": loaded.model,
            "version": loaded.version,
            "prompt_tokens": prepared.prompt_tokens,
        }
        pieces = generating.generate(loaded, prepared)
        async with contextlib.aclosing(pieces):  # type: ignore[type-var]
            async for piece in pieces:
                yield piece

    def generation_stats(self) -> dict[str, Any]:
        """The engine's counters for the served version (running, waiting sequences...)."""
        return self._kind.generating.stats(self._loaded)

    def metadata(self) -> dict[str, Any]:
        """What the ingress needs to parse this model's requests (the kind's ``describe``)."""
        return self._serving.describe(self._loaded)

    @serve.multiplexed(max_num_models_per_replica=MAX_VARIANTS)
    async def get_variant(self, model_id: str) -> Any:
        """Load variant ``model_id`` of the served version on demand."""
        return await asyncio.to_thread(
            self._serving.load_variant, self._registry, self._info, model_id
        )

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def predict_batch(self, requests: list[tuple[Any, Any]]) -> list[dict[str, Any]]:
        """One ``predict`` per loaded version in the batch (champion, and the canary's share)."""
        results: list[dict[str, Any] | None] = [None] * len(requests)
        versions = {id(loaded): loaded for _, loaded in requests}
        for key, loaded in versions.items():
            picked = [i for i, (_, held) in enumerate(requests) if id(held) == key]
            answers = self._serving.predict(loaded, [requests[i][0] for i in picked])
            for i, answer in zip(picked, answers, strict=True):
                results[i] = answer
        return [r for r in results if r is not None]

    async def predict(self, inputs: Any, candidate: int | None = None) -> dict[str, Any]:
        """The kind's answer to ``inputs`` (one request), with the model and version that
        answered: a variant when the request names one, the canary ``candidate`` when it is
        given and loaded here, else the champion."""
        variant = serve.get_multiplexed_model_id()
        loaded = await self.get_variant(variant) if variant else self._served(candidate)
        inputs = self._serving.prepare(loaded, inputs)
        if self._batching:
            answer = await self.predict_batch((inputs, loaded))
        else:  # no queue, no wait: one request, one pass
            answer = self._serving.predict(loaded, [inputs])[0]
        return {**answer, "model": loaded.model, "version": loaded.version}


def _loader(kind: ModelKind, settings: SettingsPayload) -> Callable[..., Any]:
    """How the replica loads a version: for generation (with the ``llm`` limits) when the
    kind generates text, else for predictions."""
    if not kind.has_part("generating"):
        return kind.serving.load
    return functools.partial(kind.generating.load, settings=settings.load())
