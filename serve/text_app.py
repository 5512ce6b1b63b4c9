"""The Serve application for text models: an ingress in front of, per model, text replicas
(tokenising, batched, int8, multiplexed variants) and a token-attribution explainer sidecar.

Routes, with the same auth, limits, audit and error bodies as :mod:`serve.ingress`::

    GET  /v2/health/live   GET /v2/health/ready   GET /v2/models/{name}
    POST /v2/models/{name}/infer        (one BYTES input of strings)
    POST /v1/models/{name}:predict      ({"instances": ["text", ...]})
    POST /v1/models/{name}:explain      ({"instances": [...], "target"?, "n_steps"?})

A ``serve_multiplexed_model_id: <variant>`` header sends the request to that fine-tuned
variant of ``name`` (an adapter registered against it); the token needs ``model:predict`` on
the variant. Typed entry point: ``serve run serve.text_app:build_text_app models='["banking"]'``.
"""

# No ``from __future__ import annotations``: Serve's class-based FastAPI view re-reads the
# route signatures in the replica, where string annotations turned ``self`` into a query
# parameter (422 on every route), as in serve/ingress.py.
import asyncio
import contextlib
import uuid
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from inhouse import services
from inhouse.access import RateLimiter, RequestAuthorizer
from inhouse.config import load_settings
from inhouse.errors import InhouseError, ModelNotFoundError, UnavailableError
from inhouse.protocol import parse_json, v1_response
from inhouse.registry import validate_model_name
from serve.app import settings_payload
from serve.ingress import app as numeric_app
from serve.text_explainer import TextExplainer
from serve.text_protocol import (
    parse_text_explain,
    parse_text_v1,
    parse_text_v2,
    text_metadata,
    text_v2_response,
)
from serve.text_replica import TextReplica

PREDICT, EXPLAIN = "model:predict", "model:explain"
VARIANT_HEADER = "serve_multiplexed_model_id"

text_http = FastAPI(title="inhouse text inference")
for _exc, _handler in numeric_app.exception_handlers.items():  # one error shape everywhere
    text_http.add_exception_handler(_exc, _handler)


@serve.deployment(name="text-ingress", ray_actor_options={"num_cpus": 0.25})
@serve.ingress(text_http)
class TextIngress:
    """Routes text requests to each model's replicas, variants and explainer."""

    def __init__(
        self,
        models: dict[str, DeploymentHandle],
        settings: dict[str, Any],
        explainers: dict[str, DeploymentHandle],
    ) -> None:
        self._models, self._explainers = models, explainers
        platform = load_settings(**settings)
        self._settings = platform.serve
        access = services.access(platform) if platform.security.require_auth else None
        limiter = (
            RateLimiter(self._settings.rate_limit_per_s, self._settings.rate_limit_burst)
            if access is not None and self._settings.rate_limit_per_s > 0
            else None
        )
        self._authorizer = (
            RequestAuthorizer(access, rate_limiter=limiter) if access is not None else None
        )

    def __del__(self) -> None:
        authorizer = getattr(self, "_authorizer", None)
        if authorizer is not None:
            with contextlib.suppress(UnavailableError):
                authorizer.close()

    async def _route(
        self, request: Request, name: str, action: str
    ) -> tuple[DeploymentHandle, str]:
        """Authorize, then the handle for ``name`` (or its variant) and the variant id."""
        handle = self._models.get(name)
        if handle is None:
            raise ModelNotFoundError(
                f"model {name!r} is not served here; served: {sorted(self._models)}"
            )
        variant = request.headers.get(VARIANT_HEADER, "").strip()
        if variant:
            validate_model_name(variant)
        if self._authorizer is not None:
            await self._authorizer.authorize_async(
                request.headers.get("authorization"),
                action=action,
                resource=variant or name,
                request_id=request.headers.get("x-request-id", "")[:64] or uuid.uuid4().hex,
            )
        if variant:
            handle = handle.options(multiplexed_model_id=variant)
        return handle, variant

    async def _body(self, request: Request) -> Any:
        limit = self._settings.max_body_bytes
        raw = bytearray()
        async for chunk in request.stream():
            raw.extend(chunk)
            if len(raw) > limit:
                break
        return parse_json(bytes(raw), max_bytes=limit)

    async def _call(self, coroutine: Any) -> Any:
        try:
            return await coroutine
        except InhouseError:
            raise
        except Exception as exc:  # noqa: BLE001 - a replica crash is a 503, never a 500
            cause = exc.cause if isinstance(getattr(exc, "cause", None), InhouseError) else None
            if cause is not None:
                raise cause from None
            raise UnavailableError(f"text replica failed: {type(exc).__name__}") from exc

    @text_http.get("/v2/health/live")
    async def live(self) -> dict[str, bool]:
        return {"live": True}

    @text_http.get("/v2/health/ready")
    async def ready(self) -> dict[str, bool]:
        await asyncio.gather(*(h.metadata.remote() for h in self._models.values()))
        return {"ready": True}

    @text_http.get("/v2/models/{name}")
    async def v2_metadata(self, name: str, request: Request) -> dict[str, Any]:
        handle, _ = await self._route(request, name, PREDICT)
        info = await self._call(handle.metadata.remote())
        return text_metadata(model=name, versions=[info["version"]], n_classes=info["n_classes"])

    @text_http.post("/v2/models/{name}/infer")
    async def v2_infer(self, name: str, request: Request) -> dict[str, Any]:
        handle, variant = await self._route(request, name, PREDICT)
        texts, request_id = parse_text_v2(
            await self._body(request), max_instances=self._settings.max_instances
        )
        result = await self._call(handle.predict.remote(texts))
        return text_v2_response(
            model=variant or name,
            version=result["version"],
            request_id=request_id,
            probabilities=result["probabilities"],
            class_names=result["class_names"],
        )

    @text_http.post("/v1/models/{name}:predict")
    async def v1_predict(self, name: str, request: Request) -> dict[str, Any]:
        handle, _ = await self._route(request, name, PREDICT)
        texts = parse_text_v1(await self._body(request), max_instances=self._settings.max_instances)
        result = await self._call(handle.predict.remote(texts))
        probabilities: np.ndarray = result["probabilities"]
        return v1_response(probabilities=probabilities, class_names=result["class_names"]) | {
            "model": result["model"],
            "version": result["version"],
        }

    @text_http.post("/v1/models/{name}:explain")
    async def v1_explain(self, name: str, request: Request) -> dict[str, Any]:
        handle, variant = await self._route(request, name, EXPLAIN)
        if variant or name not in self._explainers:
            raise ModelNotFoundError(f"{variant or name!r} has no explainer here")
        info = await self._call(handle.metadata.remote())
        texts, target, steps = parse_text_explain(
            await self._body(request),
            max_instances=self._settings.max_instances,
            n_classes=info["n_classes"],
        )
        result: dict[str, Any] = await self._call(
            self._explainers[name].explain.remote(texts, target, steps)
        )
        return result


class TextServeArgs(BaseModel):
    """What ``build_text_app`` needs: the text models to serve and where the state lives."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(min_length=1, description="Registry text model names to serve.")
    ref: str = Field("champion", description="Version or alias served for each model.")
    home: str | None = None
    database_url: str | None = None
    batching: bool = Field(True, description="Dynamic batching (off: one request per call).")
    explainers: bool = Field(True, description="Start a token-attribution sidecar per model.")


def build_text_app(args: dict[str, Any] | TextServeArgs) -> Application:
    """The Serve application for ``args`` (a dict when called by ``serve run``)."""
    parsed = args if isinstance(args, TextServeArgs) else TextServeArgs.model_validate(args)
    overrides = {
        k: v for k, v in (("home", parsed.home), ("database_url", parsed.database_url)) if v
    }
    settings = load_settings(**overrides)
    if not parsed.batching:
        settings.serve.max_batch_size = 1
    payload, cfg = settings_payload(settings), settings.serve
    handles, explainers = {}, {}
    for name in parsed.models:
        validate_model_name(name)
        handles[name] = TextReplica.options(
            name=f"text-model-{name}",
            num_replicas=cfg.num_replicas,
            max_ongoing_requests=cfg.max_ongoing_requests,
        ).bind(name, payload, parsed.ref)
        if parsed.explainers:
            explainers[name] = TextExplainer.options(name=f"text-explainer-{name}").bind(
                name, payload, parsed.ref
            )
    return TextIngress.options(max_ongoing_requests=cfg.max_ongoing_requests * 4).bind(
        handles, payload, explainers
    )
