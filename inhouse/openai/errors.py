"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

The same :mod:`inhouse.errors` classes are raised on every route; only the OpenAI routes
(:data:`OPENAI_PATHS`) answer them in this shape, so the ``openai`` client raises its own
exception classes (``BadRequestError``, ``NotFoundError``...) with our messages. OpenAI has
no 422: a request whose content is wrong is a 400 there.
"""

from __future__ import annotations

from typing import Any

from inhouse.errors import InvalidInputError

OPENAI_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/models"})
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


class ParamError(InvalidInputError):
    """A request parameter is wrong; ``param`` names it (OpenAI's ``param`` field)."""

    status_code = 400
    code = "invalid_value"

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


def is_openai_path(path: str) -> bool:
    """Whether errors on ``path`` are answered in OpenAI's shape."""
    return path.rstrip("/") in OPENAI_PATHS


def openai_status(status: int) -> int:
    """The status OpenAI would answer: 422 (content is wrong) is its 400."""
    return 400 if status == 422 else status


def error_body(
    message: str, *, status: int, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """The JSON body of an error answered with ``status`` (see :func:`openai_status`)."""
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
