"""The OpenAI routes of the ingress, for models whose kind generates text::

    POST /v1/chat/completions     POST /v1/completions     GET /v1/models

A base class of :class:`inhouse.serve.ingress.Ingress`: ``@serve.ingress`` binds the routes
of every class in the deployment's MRO to its FastAPI app. The official ``openai`` client
works unchanged (``base_url=".../v1"``, the inhouse token as API key), ``stream: true``
included (server-sent events). Every request needs ``model:generate`` on the model (``GET
/v1/models`` lists the served models the token may use), is rate-limited like every route
and audited when the answer is done (:mod:`inhouse.serve.generation`). Errors are in
OpenAI's shape (:mod:`inhouse.openai.errors`); a model of a kind that does not generate is a
400 naming its routes. Which models generate is their kind's business
(``ModelKind.has_part("generating")``), never their kind's name.
"""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse
from ray.serve.handle import DeploymentHandle

from inhouse.access import RequestAuthorizer
from inhouse.config import LLMSettings, ServeSettings
from inhouse.errors import (
    ModelNotFoundError,
    PermissionDeniedError,
    UnavailableError,
    WrongEndpointError,
)
from inhouse.kinds import ModelKind
from inhouse.openai import Answer, WireRequest, models_list, parse_chat, parse_completion
from inhouse.openai.errors import ParamError
from inhouse.registry import validate_model_name
from inhouse.serve.generation import Generation, start
from inhouse.serve.http import app, authorize_request, read_body

GENERATE = "model:generate"
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class OpenAIRoutes:
    """The OpenAI routes; the ingress sets the attributes below."""

    _models: dict[str, DeploymentHandle]
    _model_kinds: dict[str, ModelKind]
    _settings: ServeSettings
    _llm: LLMSettings
    _authorizer: RequestAuthorizer | None

    def _generates(self, name: str) -> bool:
        kind = self._model_kinds.get(name)
        return kind is not None and kind.has_part("generating")

    async def _allow(self, request: Request, name: str) -> tuple[str | None, str]:
        """Authorize ``model:generate`` on ``name``: the principal (None without access
        control) and the request id."""
        return await authorize_request(self._authorizer, request, action=GENERATE, resource=name)

    def _generator(self, name: str) -> DeploymentHandle:
        handle = self._models.get(name)
        if handle is None:
            raise ModelNotFoundError(
                f"model {name!r} is not served here; served: {sorted(self._models)}"
            )
        if not self._generates(name):
            raise WrongEndpointError(
                f"model {name!r} is a {self._model_kinds[name].name} model: it does not "
                f"generate text; send predictions to POST /v1/models/{name}:predict"
            )
        return handle

    @app.get("/v1/models")
    async def openai_models(self, request: Request) -> dict[str, Any]:
        """The served models that generate text and that the token may use."""
        allowed = []
        for name in sorted(n for n in self._models if self._generates(n)):
            try:
                await self._allow(request, name)
            except PermissionDeniedError:
                continue
            allowed.append(name)
        return models_list(allowed)

    @app.post("/v1/chat/completions")
    async def openai_chat(self, request: Request) -> Any:
        return await self._complete(request, chat=True)

    @app.post("/v1/completions")
    async def openai_completions(self, request: Request) -> Any:
        return await self._complete(request, chat=False)

    async def _complete(self, request: Request, *, chat: bool) -> Any:
        body = await read_body(request, self._settings)
        name = body.get("model") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            raise ParamError("model", "expected the name of a served model (a string)")
        validate_model_name(name)
        principal, request_id = await self._allow(request, name)
        handle = self._generator(name)  # 404 for a model not served here
        parse = parse_chat if chat else parse_completion
        wire: WireRequest = parse(body, max_tokens=self._llm.max_tokens)
        stream = handle.options(stream=True).generate.remote(wire.call)
        head = await start(stream)  # the replica's refusal (context window) is a 4xx here

        def audit(outcome: str, detail: str) -> None:
            if self._authorizer is not None and principal is not None:
                with contextlib.suppress(UnavailableError):  # the answer is already sent
                    self._authorizer.queue.put(
                        principal,
                        GENERATE,
                        name,
                        "allow" if outcome == "allow" else "error",
                        request_id,
                        detail,
                    )

        generation = Generation(
            stream,
            head,
            Answer(name, chat),
            wire.call,
            audit,
            log_content=self._llm.log_content,
            include_usage=wire.include_usage,
        )
        if not wire.stream:
            return JSONResponse(await generation.collect())
        return StreamingResponse(
            generation.events(), media_type="text/event-stream", headers=_SSE_HEADERS
        )
