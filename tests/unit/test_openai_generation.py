"""How the ingress shapes a generation's pieces (the replica's stream, here a plain async
iterator) into an answer and an audit entry: token counts and latency always, the prompt and
completion only with ``llm.log_content``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from inhouse.kinds.generating import GenerateCall, Generated, Message
from inhouse.openai import Answer
from inhouse.serve.generation import Generation

CALL = GenerateCall(messages=(Message("user", "my secret question"),), max_tokens=4)
PIECES = [Generated("Hel", 1), Generated("lo", 2), Generated("!", 3, "stop")]


async def pieces() -> AsyncIterator[Generated]:
    for piece in PIECES:
        yield piece


def generation(log_content: bool, audit: list[tuple[str, str]], *, chat: bool = True) -> Generation:
    return Generation(
        pieces(),  # type: ignore[arg-type]
        {"model": "smol", "version": 3, "prompt_tokens": 7},
        Answer("smol", chat=chat),
        CALL,
        lambda outcome, detail: audit.append((outcome, detail)),
        log_content=log_content,
        include_usage=True,
    )


def test_a_whole_answer_and_its_audit_without_content() -> None:
    audit: list[tuple[str, str]] = []
    body = asyncio.run(generation(False, audit).collect())
    assert body["choices"][0]["message"]["content"] == "Hello!"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    [(outcome, detail)] = audit
    assert outcome == "allow" and "version=3 prompt_tokens=7 completion_tokens=3" in detail
    assert "latency_ms=" in detail and "finish=stop" in detail
    assert "secret" not in detail and "Hello" not in detail


def test_content_reaches_the_audit_only_when_logging_is_on() -> None:
    audit: list[tuple[str, str]] = []
    asyncio.run(generation(True, audit).collect())
    assert 'prompt=[["user", "my secret question"]]' in audit[0][1]
    assert 'completion="Hello!"' in audit[0][1]


def test_a_streamed_answer_ends_with_usage_then_done() -> None:
    audit: list[tuple[str, str]] = []

    async def events() -> list[bytes]:
        return [event async for event in generation(False, audit, chat=False).events()]

    sent = asyncio.run(events())
    assert sent[-1] == b"data: [DONE]\n\n"
    data = [json.loads(e[6:]) for e in sent[:-1]]
    assert [d["choices"][0]["text"] for d in data[:-1] if d["choices"]] == ["Hel", "lo", "!", ""]
    assert data[-2]["choices"][0]["finish_reason"] == "stop"
    assert data[-1]["choices"] == [] and data[-1]["usage"]["completion_tokens"] == 3
    assert audit[0][0] == "allow"
