"""OpenAI answers: a whole chat or text completion, streamed chunks, usage, the model list.

:class:`Answer` shapes one request's answer, chat (``chat.completion``) or plain completion
(``text_completion``), from the pieces the kind generates; :func:`sse` frames a streamed
chunk as a server-sent event and :data:`DONE` ends the stream.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DONE = b"data: [DONE]\n\n"
OWNER = "inhouse"


def sse(data: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``data`` as JSON."""
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def model_card(name: str, *, created: int = 0) -> dict[str, Any]:
    """One entry of ``GET /v1/models`` (and what ``models.retrieve`` reads)."""
    return {"id": name, "object": "model", "created": created, "owned_by": OWNER}


def models_list(names: Iterable[str], *, created: int = 0) -> dict[str, Any]:
    """The body of ``GET /v1/models``."""
    return {"object": "list", "data": [model_card(n, created=created) for n in names]}


@dataclass
class Answer:
    """The answer to one request for ``model``: a chat (``chat=True``) or a completion."""

    model: str
    chat: bool
    id: str = field(default="")
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        if not self.id:
            self.id = ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex

    @property
    def _object(self) -> str:
        return "chat.completion" if self.chat else "text_completion"

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def response(
        self, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int
    ) -> dict[str, Any]:
        """The whole answer (no streaming)."""
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason, "logprobs": None}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {
            **self._head(self._object),
            "choices": [choice],
            "usage": usage(prompt_tokens, completion_tokens),
        }

    def chunk(self, text: str, finish_reason: str | None = None, *, first: bool = False) -> bytes:
        """A streamed piece: ``text`` (the role too on a chat's ``first`` chunk), and the
        finish reason on the last."""
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason, "logprobs": None}
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant"} if first else {}
            if text or first:
                delta["content"] = text
            choice["delta"] = delta
            obj = "chat.completion.chunk"
        else:
            choice["text"] = text
            obj = "text_completion"
        return sse({**self._head(obj), "choices": [choice]})

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        """The last chunk when ``stream_options.include_usage`` is asked: no choices."""
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return sse(
            {**self._head(obj), "choices": [], "usage": usage(prompt_tokens, completion_tokens)}
        )

    @staticmethod
    def error_chunk(body: dict[str, Any]) -> bytes:
        """An error after the stream began (its status was already sent): OpenAI's error
        body as an event, which the ``openai`` client raises as an ``APIError``."""
        return sse(body)
