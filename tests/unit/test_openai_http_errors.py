"""The ingress's error handlers answer the OpenAI routes in OpenAI's shape (422 as 400, the
rate limiter's Retry-After kept) and every other route in inhouse's shape."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request

from inhouse.errors import AuthenticationError, InvalidInputError, RateLimitedError
from inhouse.openai.errors import ParamError
from inhouse.serve import http


def request(path: str, method: str = "POST") -> Request:
    scope = {"type": "http", "path": path, "method": method, "headers": [], "query_string": b""}
    return Request(scope)


def answer(handler: Any, path: str, exc: Exception) -> tuple[int, dict[str, Any], Any]:
    response = asyncio.run(handler(request(path), exc))
    return response.status_code, json.loads(response.body), response.headers


def test_openai_routes_answer_in_openai_shape() -> None:
    status, body, _ = answer(
        http._inhouse_error, "/v1/chat/completions", ParamError("top_p", "too big")
    )
    assert status == 400
    assert body == {
        "error": {
            "message": "top_p: too big",
            "type": "invalid_request_error",
            "param": "top_p",
            "code": "invalid_value",
        }
    }
    status, body, _ = answer(http._inhouse_error, "/v1/completions", InvalidInputError("bad"))
    assert status == 400 and body["error"]["code"] == "invalid_input"  # OpenAI has no 422
    status, body, headers = answer(
        http._inhouse_error, "/v1/models", RateLimitedError("slow down", retry_after_s=2.5)
    )
    assert status == 429 and body["error"]["type"] == "rate_limit_error"
    assert headers["retry-after"] == "3"
    status, body, headers = answer(
        http._inhouse_error, "/v1/chat/completions", AuthenticationError("no token")
    )
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert body["error"]["type"] == "authentication_error"


def test_framework_errors_on_openai_routes_too() -> None:
    status, body, _ = answer(
        http._http_error, "/v1/chat/completions", HTTPException(405, "Method Not Allowed")
    )
    assert status == 405 and "Method Not Allowed" in body["error"]["message"]
    invalid = RequestValidationError([{"loc": ("body", "x"), "msg": "bad"}])
    status, body, _ = answer(http._validation_error, "/v1/completions", invalid)
    assert status == 400 and body["error"]["message"] == "body.x: bad"


def test_other_routes_keep_inhouse_shape() -> None:
    for path in ("/v2/models/digits/infer", "/v1/models/digits:predict", "/v1/models/digits"):
        status, body, _ = answer(http._inhouse_error, path, InvalidInputError("bad"))
        assert status == 422 and body == {"error": "bad", "code": "invalid_input"}
