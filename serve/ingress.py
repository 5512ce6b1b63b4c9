"""The HTTP front door: protocol parsing, limits, error mapping and routing to model replicas.

Routes (Open Inference Protocol v2 and KServe v1)::

    GET  /v2/health/live            GET /v2/health/ready        GET /v2
    GET  /v2/models/{name}          GET /v2/models/{name}/ready
    POST /v2/models/{name}/infer    POST /v1/models/{name}:predict    GET /v1/models/{name}
    POST /v1/models/{name}:explain  (JSON attributions; ``?format=png`` for the picture)

Every route but the health checks and ``GET /v2`` needs ``Authorization: Bearer <token>``
with the permission for the model (``model:predict``, ``model:explain``); each decision is
written to the audit log. Every error is an :mod:`inhouse.errors` class turned into its
status and a JSON body ``{"error": "...", "code": "..."}``; nothing a client sends produces
a 500.
"""

import asyncio
import contextlib
import math
import time
import uuid
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

import inhouse
from inhouse import services
from inhouse.access import PreAuthLimiter, RateLimiter, RequestAuthorizer
from inhouse.config import SettingsPayload
from inhouse.errors import (
    InhouseError,
    ModelNotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    RequestTimeoutError,
    UnavailableError,
)
from inhouse.explain.request import parse_explain, server_limits
from inhouse.protocol import (
    model_metadata,
    parse_json,
    parse_v1,
    parse_v2,
    v1_response,
    v2_response,
)
from serve import text_routes
from serve.canary_router import CanaryRouter

PREDICT = "model:predict"
EXPLAIN = "model:explain"
METADATA_TTL_S = 10.0
READY_TIMEOUT_S = 2.0

app = FastAPI(title="inhouse inference", version=inhouse.__version__)


@app.exception_handler(InhouseError)
async def _inhouse_error(_request: Request, exc: InhouseError) -> JSONResponse:
    headers: dict[str, str] = {}
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=headers or None)


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # Unknown paths and wrong methods get the same JSON error shape as everything else.
    message = f"{request.method} {request.url.path}: {exc.detail}"
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse({"error": message, "code": code}, status_code=exc.status_code)


@app.exception_handler(RequestValidationError)
async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    return JSONResponse({"error": f"{where}: {first['msg']}", "code": "invalid_input"}, 422)


@serve.deployment(name="ingress", ray_actor_options={"num_cpus": 0.25})
@serve.ingress(app)
class Ingress:
    """Routes requests for each model name to that model's replica deployment."""

    def __init__(
        self,
        models: dict[str, DeploymentHandle],
        settings: SettingsPayload,
        explainers: dict[str, DeploymentHandle] | None = None,
        text_models: list[str] | None = None,
    ) -> None:
        self._models = models
        self._explainers = explainers or {}
        self._text = frozenset(text_models or ())  # their routes: serve/text_routes.py
        platform = settings.load()
        self._settings = platform.serve
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
        self._explain_limits = server_limits(max_instances=self._settings.max_instances)

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
        request_id = request.headers.get("x-request-id", "")[:64] or uuid.uuid4().hex
        if self._authorizer is not None:
            # The TCP peer the Serve proxy saw (a trusted proxy's X-Forwarded-For from
            # 127.0.0.1, per uvicorn's default); None when unknown: the global budget holds.
            await self._authorizer.authorize_async(
                request.headers.get("authorization"),
                action=action,
                resource=resource,
                request_id=request_id,
                client=request.client.host if request.client else None,
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
        info: dict[str, Any] = await self._handle(name).metadata.remote()
        self._metadata[name] = (time.monotonic(), info)
        return info

    async def _body(self, request: Request) -> Any:
        limit = self._settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            # Refuse before reading a byte of an oversized body.
            raise PayloadTooLargeError(f"request body is {declared} bytes; the limit is {limit}")
        raw = bytearray()

        async def read() -> None:
            async for chunk in request.stream():
                raw.extend(chunk)
                if len(raw) > limit:
                    break

        try:  # a stalled client must not hold the request (and its memory) forever
            await asyncio.wait_for(read(), timeout=self._settings.body_timeout_s)
        except asyncio.TimeoutError:
            raise RequestTimeoutError(
                f"the request body did not arrive within {self._settings.body_timeout_s:g} s"
            ) from None
        return parse_json(bytes(raw), max_bytes=limit)

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
        if name in self._text:
            return await text_routes.v2_metadata(self, name, request)
        await self._authorize(request, action=PREDICT, resource=name)
        info = await self._model_info(name)
        return model_metadata(
            model=name,
            versions=[info["version"]],
            n_features=info["n_features"],
            n_classes=info["n_classes"],
        )

    @app.get("/v2/models/{name}/ready")
    async def v2_model_ready(self, name: str, request: Request) -> JSONResponse:
        await self._authorize(request, action=PREDICT, resource=name)
        self._handle(name)
        ok = await self._ready(name)
        return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)

    @app.post("/v2/models/{name}/infer")
    async def v2_infer(self, name: str, request: Request) -> dict[str, Any]:
        if name in self._text:
            return await text_routes.v2_infer(self, name, request)
        await self._authorize(request, action=PREDICT, resource=name)
        handle = self._handle(name)
        info = await self._model_info(name)
        x, request_id = parse_v2(
            await self._body(request),
            n_features=info["n_features"],
            max_instances=self._settings.max_instances,
        )
        result = await self._predict(name, handle, x)
        return v2_response(
            model=name,
            version=result["version"],
            request_id=request_id,
            probabilities=result["probabilities"],
        )

    @app.get("/v1/models/{name}")
    async def v1_status(self, name: str, request: Request) -> dict[str, Any]:
        await self._authorize(request, action=PREDICT, resource=name)
        self._handle(name)
        return {"name": name, "ready": await self._ready(name)}

    @app.post("/v1/models/{name}:predict")
    async def v1_predict(self, name: str, request: Request) -> dict[str, Any]:
        if name in self._text:
            return await text_routes.v1_predict(self, name, request)
        await self._authorize(request, action=PREDICT, resource=name)
        handle = self._handle(name)
        info = await self._model_info(name)
        x = parse_v1(
            await self._body(request),
            n_features=info["n_features"],
            max_instances=self._settings.max_instances,
        )
        result = await self._predict(name, handle, x)
        return v1_response(probabilities=result["probabilities"], class_names=info["class_names"])

    @app.post("/v1/models/{name}:explain")
    async def v1_explain(
        self, name: str, request: Request, format: Literal["json", "png"] = "json"
    ) -> Response:
        if name in self._text:
            return JSONResponse(await text_routes.v1_explain(self, name, request, format))
        await self._authorize(request, action=EXPLAIN, resource=name)
        self._handle(name)  # 404 for unknown models
        explainer = self._explainers.get(name)
        if explainer is None:
            raise ModelNotFoundError(f"model {name!r} has no explainer here")
        info = await self._model_info(name)
        x, method, target, options = parse_explain(
            await self._body(request),
            n_features=info["n_features"],
            limits=self._explain_limits,
            n_classes=info["n_classes"],
        )
        try:
            if format == "png":
                png: bytes = await explainer.explain_png.remote(x, method, target, options)
                return Response(png, media_type="image/png")
            return JSONResponse(await explainer.explain.remote(x, method, target, options))
        except InhouseError:
            raise
        except Exception as exc:  # noqa: BLE001 - an explainer crash is a 503, never a 500
            raise UnavailableError(f"explainer failed: {type(exc).__name__}") from exc

    async def _predict(self, name: str, handle: DeploymentHandle, x: Any) -> dict[str, Any]:
        """Champion (or, for a canary's share, candidate) probabilities; a failing canary
        is counted against it and the request answered by the champion instead."""
        candidate = self._canary.choose(name)
        if candidate is not None:
            started = time.perf_counter()
            try:
                result: dict[str, Any] = await handle.predict.remote(x, candidate)
            except Exception:  # noqa: BLE001 - the champion answers; the canary is charged
                champion = await self._champion_predict(name, handle, x)
                self._canary.record(name, candidate, started, error=True)
                return champion
            self._canary.record(name, int(result["version"]), started, error=False)
            return result
        return await self._champion_predict(name, handle, x)

    async def _champion_predict(
        self, name: str, handle: DeploymentHandle, x: Any
    ) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            result: dict[str, Any] = await handle.predict.remote(x)
        except InhouseError:
            raise
        except Exception as exc:  # noqa: BLE001 - a replica crash is a 503, never a 500
            cause = getattr(exc, "cause", None)
            if isinstance(cause, InhouseError):  # the replica refused the input
                raise cause from None
            self._canary.record(name, None, started, error=True)
            raise UnavailableError(f"model replica failed: {type(exc).__name__}") from exc
        self._canary.record(name, int(result["version"]), started, error=False)
        return result
