"""One generation as the ingress answers it: the replica's stream turned into OpenAI's JSON
answer or server-sent events, cancelled when the client goes away, and audited when done.

The replica's stream (:meth:`ModelReplica.generate`) starts with the prompt's size: awaiting
it (:func:`start`) turns a refused request (a prompt over the context window) into its 4xx
before any byte of the answer is sent. A streamed answer that fails later ends with an error
event in OpenAI's shape (its status was already sent). The audit entry names the model,
version, token counts, latency and how it ended; the prompt and completion only when
``llm.log_content`` is on.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ray.serve.handle import DeploymentResponseGenerator

from inhouse.errors import InhouseError, UnavailableError
from inhouse.kinds.generating import GenerateCall, Generated
from inhouse.openai import DONE, Answer, error_body, openai_status
from inhouse.serve.http import refusal

#: Called once per generation with (outcome, audit detail).
Audit = Callable[[str, str], None]


def _failure(exc: BaseException) -> InhouseError:
    """The client's error for a failed replica call: its refusal, or a 503."""
    refused: InhouseError | None = refusal(exc)
    if refused is not None:
        return refused
    return UnavailableError(f"model replica failed: {type(exc).__name__}")


async def start(stream: DeploymentResponseGenerator[Any]) -> dict[str, Any]:
    """The stream's first item (model, version, prompt tokens); the replica's refusal (or a
    503) when it did not accept the request."""
    try:
        head: dict[str, Any] = await stream.__anext__()
    except asyncio.CancelledError:  # the client went away during the prompt's checks
        stream.cancel()  # type: ignore[no-untyped-call]
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is turned into a status
        raise _failure(exc) from None
    return head


@dataclass
class Generation:
    """A started generation: ``stream`` after its first item ``head``."""

    stream: DeploymentResponseGenerator[Any]
    head: dict[str, Any]
    answer: Answer
    call: GenerateCall
    audit: Audit
    log_content: bool = False
    include_usage: bool = False
    started: float = field(default_factory=time.perf_counter)
    _text: list[str] = field(default_factory=list)
    _tokens: int = 0
    _finish: str | None = None

    @property
    def prompt_tokens(self) -> int:
        return int(self.head["prompt_tokens"])

    async def collect(self) -> dict[str, Any]:
        """The whole answer (``stream: false``)."""
        outcome = "error"
        try:
            async for piece in self.stream:
                self._add(piece)
            outcome = "allow"
        except asyncio.CancelledError:  # the client went away: stop generating for it
            outcome = "cancelled"
            self.stream.cancel()  # type: ignore[no-untyped-call]
            raise
        except Exception as exc:  # noqa: BLE001 - a failure is the client's error or a 503
            raise _failure(exc) from None
        finally:
            self._done(outcome)
        text = "".join(self._text)
        return self.answer.response(text, self._finish or "stop", self.prompt_tokens, self._tokens)

    async def events(self) -> AsyncIterator[bytes]:
        """The answer as server-sent events (``stream: true``), ``data: [DONE]`` last."""
        outcome = "cancelled"
        try:
            if self.answer.chat:
                yield self.answer.chunk("", first=True)
            async for piece in self.stream:
                self._add(piece)
                if piece.text:
                    yield self.answer.chunk(piece.text)
            yield self.answer.chunk("", self._finish or "stop")
            if self.include_usage:
                yield self.answer.usage_chunk(self.prompt_tokens, self._tokens)
            yield DONE
            outcome = "allow"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the status is sent: an error event instead
            error = _failure(exc)
            outcome = "error"
            status = openai_status(error.status_code)
            yield self.answer.error_chunk(error_body(error.message, status=status, code=error.code))
        finally:
            if outcome == "cancelled":  # the client went away: stop generating for it
                self.stream.cancel()  # type: ignore[no-untyped-call]
            self._done(outcome)

    def _add(self, piece: Generated) -> None:
        self._text.append(piece.text)
        self._tokens = piece.completion_tokens
        if piece.finish_reason is not None:
            self._finish = piece.finish_reason

    def _done(self, outcome: str) -> None:
        latency_ms = (time.perf_counter() - self.started) * 1000.0
        detail = (
            f"version={self.head['version']} prompt_tokens={self.prompt_tokens} "
            f"completion_tokens={self._tokens} latency_ms={latency_ms:.0f} "
            f"finish={self._finish or outcome}"
        )
        if self.log_content:
            prompt = (
                [[m.role, m.content] for m in self.call.messages]
                if self.call.messages is not None
                else self.call.prompt
            )
            detail += f" prompt={json.dumps(prompt)} completion={json.dumps(''.join(self._text))}"
        self.audit("allow" if outcome == "allow" else "error", detail)
