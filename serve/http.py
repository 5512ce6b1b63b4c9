"""The HTTP edge of the ingress: the FastAPI app with its error handlers, reading a request
body within limits, and turning a deployment's failure into an HTTP status.

Every error is an :mod:`inhouse.errors` class turned into its status and a JSON body
``{"error": "...", "code": "..."}``; unknown paths, wrong methods and FastAPI's own validation
errors get the same shape, except on the OpenAI routes (:func:`inhouse.openai.is_openai_path`),
whose errors are in OpenAI's shape. Nothing a client sends produces a 500.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import inhouse
from inhouse.access import RequestAuthorizer
from inhouse.config import ServeSettings
from inhouse.errors import (
    InhouseError,
    PayloadTooLargeError,
    RateLimitedError,
    RequestTimeoutError,
    UnavailableError,
)
from inhouse.openai import error_body, is_openai_path, openai_status
from inhouse.protocol import parse_json

app = FastAPI(title="inhouse inference", version=inhouse.__version__)


def _answer(
    request: Request,
    message: str,
    status: int,
    code: str,
    *,
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> JSONResponse:
    """The error's JSON answer: inhouse's shape, or OpenAI's on the OpenAI routes."""
    if is_openai_path(request.url.path):
        status = openai_status(status)
        body = error_body(message, status=status, code=code, param=param)
        return JSONResponse(body, status_code=status, headers=headers)
    return JSONResponse({"error": message, "code": code}, status_code=status, headers=headers)


@app.exception_handler(InhouseError)
async def _inhouse_error(request: Request, exc: InhouseError) -> JSONResponse:
    headers: dict[str, str] = {}
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    param = getattr(exc, "param", None)
    return _answer(
        request, exc.message, exc.status_code, exc.code, headers=headers or None, param=param
    )


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # Unknown paths and wrong methods get the same JSON error shape as everything else.
    message = f"{request.method} {request.url.path}: {exc.detail}"
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _answer(request, message, exc.status_code, code)


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    return _answer(request, f"{where}: {first['msg']}", 422, "invalid_input")


async def read_body(request: Request, settings: ServeSettings) -> Any:
    """The request's JSON body: 413 over ``max_body_bytes`` (refused before reading when the
    declared length says so), 408 when it does not arrive within ``body_timeout_s``."""
    limit = settings.max_body_bytes
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
        await asyncio.wait_for(read(), timeout=settings.body_timeout_s)
    except asyncio.TimeoutError:
        raise RequestTimeoutError(
            f"the request body did not arrive within {settings.body_timeout_s:g} s"
        ) from None
    return parse_json(bytes(raw), max_bytes=limit)


def refusal(exc: BaseException) -> InhouseError | None:
    """The InhouseError a failed deployment call raised (the deployment refused the input:
    the client's status), or None (the deployment failed: a 503, never a 500)."""
    if isinstance(exc, InhouseError):
        return exc
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, InhouseError) else None


async def call_replica(awaitable: Awaitable[Any], what: str) -> Any:
    """Await a deployment call: its refusal as is, any other failure a 503."""
    try:
        return await awaitable
    except Exception as exc:  # noqa: BLE001 - every failure is turned into a status
        refused = refusal(exc)
        if refused is not None:
            raise refused from None
        raise UnavailableError(f"{what} failed: {type(exc).__name__}") from exc


async def authorize_request(
    authorizer: RequestAuthorizer | None, request: Request, *, action: str, resource: str
) -> tuple[str | None, str]:
    """Check the bearer token for ``action`` on ``resource`` (nothing to check without access
    control): the principal's name (None then) and the request id."""
    request_id = request.headers.get("x-request-id", "")[:64] or uuid.uuid4().hex
    if authorizer is None:
        return None, request_id
    # The TCP peer the Serve proxy saw (a trusted proxy's X-Forwarded-For from 127.0.0.1, per
    # uvicorn's default); None when unknown: the global pre-auth budget holds.
    principal = await authorizer.authorize_async(
        request.headers.get("authorization"),
        action=action,
        resource=resource,
        request_id=request_id,
        client=request.client.host if request.client else None,
    )
    return principal.name, request_id
