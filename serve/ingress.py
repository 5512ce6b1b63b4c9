"""The HTTP front door: protocol parsing, limits, error mapping and routing to model replicas.

Routes (Open Inference Protocol v2 and KServe v1)::

    GET  /v2/health/live            GET /v2/health/ready        GET /v2
    GET  /v2/models/{name}          GET /v2/models/{name}/ready
    POST /v2/models/{name}/infer    POST /v1/models/{name}:predict    GET /v1/models/{name}
    POST /v1/models/{name}:explain  (JSON attributions; ``?format=png`` for the picture)
    POST /v1/chat/completions       POST /v1/completions              GET /v1/models
                                    (OpenAI, for models that generate: serve/openai_routes.py)

Every route but the health checks and ``GET /v2`` needs ``Authorization: Bearer <token>``
with the permission for the model (``model:predict``, ``model:explain``, ``model:generate``
for the OpenAI routes and for ``GET /v1/models/{name}`` of a model that generates, which also
answers as an OpenAI model card); each decision is
written to the audit log. Every error is an :mod:`inhouse.errors` class turned into its
status and a JSON body ``{"error": "...", "code": "..."}``; nothing a client sends produces
a 500.

Each model's kind (:class:`inhouse.kinds.serving.ServingKind`) parses its request bodies and
shapes its answers; the routes are the same for every kind. For kinds with variants, a
``serve_multiplexed_model_id: <variant>`` header sends the request to that variant of the
model (loaded on demand by the replica); the token then needs the permission on the variant.
"""

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.serve.handle import DeploymentHandle

import inhouse
from inhouse import services
from inhouse.access import PreAuthLimiter, RateLimiter, RequestAuthorizer
from inhouse.config import SettingsPayload
from inhouse.errors import ModelNotFoundError, UnavailableError
from inhouse.kinds import ModelKind
from inhouse.kinds.serving import ServingKind
from inhouse.openai import model_card
from inhouse.registry import validate_model_name
from inhouse.serve.canary_router import CanaryRouter
from inhouse.serve.http import app, authorize_request, call_replica, read_body
from inhouse.serve.openai_routes import GENERATE, OpenAIRoutes

PREDICT = "model:predict"
EXPLAIN = "model:explain"
METADATA_TTL_S = 10.0
READY_TIMEOUT_S = 2.0
VARIANT_HEADER = "serve_multiplexed_model_id"


@dataclass(frozen=True)
class Route:
    """Where one authorized request goes: the model's kind, its replicas, the variant asked."""

    name: str
    kind: ServingKind[Any, Any]
    handle: DeploymentHandle
    variant: str


@serve.deployment(name="ingress", ray_actor_options={"num_cpus": 0.25})
@serve.ingress(app)
class Ingress(OpenAIRoutes):
    """Routes requests for each model name to that model's replica deployment."""

    def __init__(
        self,
        models: dict[str, DeploymentHandle],
        settings: SettingsPayload,
        explainers: dict[str, DeploymentHandle],
        kinds: dict[str, ModelKind],
    ) -> None:
        self._models = models
        self._explainers = explainers
        self._kinds = {name: kind.serving for name, kind in kinds.items()}
        self._model_kinds = dict(kinds)
        platform = settings.load()
        self._settings = platform.serve
        self._llm = platform.llm
        self._access = services.access(platform) if platform.security.require_auth else None
        self._limiter = (
            RateLimiter(self._settings.rate_limit_per_s, self._settings.rate_limit_burst)
            if self._access is not None and self._settings.rate_limit_per_s > 0
            else None
        )
        # Cached token checks (a few µs) and audit entries written in batches by a thread;
        # revocations and grant changes apply within the cache TTL (1 s). Attempts not
        # authenticated from memory are budgeted per client address and globally before
        # any database work, and repeated refusals are audited once per window.
        self._authorizer = (
            RequestAuthorizer(
                self._access,
                rate_limiter=self._limiter,
                preauth=self._preauth_limiter(),
                failure_window_s=self._settings.audit_failure_window_s,
            )
            if self._access is not None
            else None
        )
        self._metadata: dict[str, tuple[float, dict[str, Any]]] = {}
        # A running canary gets its share of the predictions (and its outcomes are counted).
        self._canary = CanaryRouter(services.engine(platform), list(models))

    def _preauth_limiter(self) -> PreAuthLimiter | None:
        serving = self._settings
        if serving.preauth_rate_per_s <= 0:
            return None
        return PreAuthLimiter(
            client_rate_per_s=serving.preauth_rate_per_s,
            client_burst=serving.preauth_burst,
            global_rate_per_s=serving.preauth_global_rate_per_s,
            global_burst=serving.preauth_global_burst,
        )

    async def _authorize(self, request: Request, *, action: str, resource: str) -> str:
        """Check the bearer token for ``action`` on ``resource``; returns the request id."""
        _, request_id = await authorize_request(
            self._authorizer, request, action=action, resource=resource
        )
        return request_id

    def __del__(self) -> None:
        # Serve calls __del__ on replica shutdown: write the last queued audit entries.
        authorizer = getattr(self, "_authorizer", None)
        if authorizer is not None:
            with contextlib.suppress(UnavailableError):
                authorizer.close()

    def _handle(self, name: str) -> DeploymentHandle:
        handle = self._models.get(name)
        if handle is None:
            raise ModelNotFoundError(
                f"model {name!r} is not served here; served: {sorted(self._models)}"
            )
        return handle

    async def _model_info(self, name: str) -> dict[str, Any]:
        cached = self._metadata.get(name)
        if cached is not None and time.monotonic() - cached[0] < METADATA_TTL_S:
            return cached[1]
        info: dict[str, Any] = await call_replica(
            self._handle(name).metadata.remote(), "model replica"
        )
        self._metadata[name] = (time.monotonic(), info)
        return info

    async def _route(self, request: Request, name: str, action: str) -> Route:
        """Authorize ``action`` (on the variant when the kind has variants and one is asked
        for); 404 for a model not served here."""
        kind = self._kinds.get(name)
        variant = ""
        if kind is not None and kind.multiplexed:
            variant = request.headers.get(VARIANT_HEADER, "").strip()
            if variant:
                validate_model_name(variant)
        await self._authorize(request, action=action, resource=variant or name)
        handle = self._handle(name)  # 404 for a model not served here
        return Route(name, self._kinds[name], handle, variant)

    async def _ready(self, name: str) -> bool:
        try:
            await asyncio.wait_for(self._model_info(name), READY_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return False
        return True

    @app.get("/v2/health/live")
    async def live(self) -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready(self) -> JSONResponse:
        states = await asyncio.gather(*(self._ready(name) for name in self._models))
        ok = all(states)
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/v2")
    async def server_metadata(self) -> dict[str, Any]:
        return {"name": "inhouse", "version": inhouse.__version__, "extensions": []}

    @app.get("/v2/models/{name}")
    async def v2_metadata(self, name: str, request: Request) -> dict[str, Any]:
        await self._authorize(request, action=PREDICT, resource=name)
        self._handle(name)
        info = await self._model_info(name)
        return self._kinds[name].model_metadata(model=name, info=info)

    @app.get("/v2/models/{name}/ready")
    async def v2_model_ready(self, name: str, request: Request) -> JSONResponse:
        await self._authorize(request, action=PREDICT, resource=name)
        self._handle(name)
        ok = await self._ready(name)
        return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)

    @app.post("/v2/models/{name}/infer")
    async def v2_infer(self, name: str, request: Request) -> dict[str, Any]:
        route = await self._route(request, name, PREDICT)
        info = await self._model_info(name)
        inputs, request_id = route.kind.parse_v2(
            await read_body(request, self._settings),
            info,
            max_instances=self._settings.max_instances,
        )
        result = await self._predict(route, inputs)
        return route.kind.v2_response(
            model=route.variant or name, request_id=request_id, result=result
        )

    @app.get("/v1/models/{name}")
    async def v1_status(self, name: str, request: Request) -> dict[str, Any]:
        """KServe v1 status; also an OpenAI model card (``models.retrieve``)."""
        action = GENERATE if self._generates(name) else PREDICT
        await self._authorize(request, action=action, resource=name)
        self._handle(name)
        return {"name": name, "ready": await self._ready(name), **model_card(name)}

    @app.post("/v1/models/{name}:predict")
    async def v1_predict(self, name: str, request: Request) -> dict[str, Any]:
        route = await self._route(request, name, PREDICT)
        info = await self._model_info(name)
        inputs = route.kind.parse_v1(
            await read_body(request, self._settings),
            info,
            max_instances=self._settings.max_instances,
        )
        return route.kind.v1_response(await self._predict(route, inputs))

    @app.post("/v1/models/{name}:explain")
    async def v1_explain(
        self, name: str, request: Request, format: Literal["json", "png"] = "json"
    ) -> Response:
        route = await self._route(request, name, EXPLAIN)
        explainer = self._explainers.get(name)
        if route.variant or explainer is None:
            raise ModelNotFoundError(f"model {route.variant or name!r} has no explainer here")
        info = await self._model_info(name)
        call = route.kind.parse_explain(
            await read_body(request, self._settings),
            info,
            max_instances=self._settings.max_instances,
            fmt=format,
        )
        if format == "png":
            png: bytes = await call_replica(explainer.explain_png.remote(call), "explainer")
            return Response(png, media_type="image/png")
        return JSONResponse(await call_replica(explainer.explain.remote(call), "explainer"))

    async def _predict(self, route: Route, inputs: Any) -> dict[str, Any]:
        """A variant answers its own requests; the model's go through the canary split."""
        if route.variant:
            variant = route.handle.options(multiplexed_model_id=route.variant)
            answer: dict[str, Any] = await call_replica(
                variant.predict.remote(inputs), "model replica"
            )
            return answer
        return await self._canary.predict(route.name, route.handle, inputs)
