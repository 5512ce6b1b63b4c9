"""The OpenAI wire format without Ray: bodies parsed and refused, errors and answers shaped."""

from __future__ import annotations

import json
from typing import Any

import pytest

from inhouse.errors import InvalidInputError, MalformedRequestError
from inhouse.kinds.generating import GenerateCall, Message
from inhouse.openai import (
    DONE,
    Answer,
    error_body,
    is_openai_path,
    models_list,
    openai_status,
    parse_chat,
    parse_completion,
    sse,
)
from inhouse.openai.errors import ParamError

LIMIT = 64


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "smol", "messages": [{"role": "user", "content": "hi"}], **fields}


def test_a_chat_body_becomes_a_generate_call() -> None:
    wire = parse_chat(
        chat(
            messages=[
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": "really"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
                {"role": "assistant", "content": "ok", "name": "bot"},
            ],
            max_tokens=12,
            temperature=0,
            top_p=0.5,
            stop="\n",
            seed=7,
            stream=True,
            stream_options={"include_usage": True},
            user="alice",
            n=1,
            frequency_penalty=0,
        ),
        max_tokens=LIMIT,
    )
    assert wire.model == "smol" and wire.stream and wire.include_usage
    assert wire.call == GenerateCall(
        messages=(
            Message("system", "be brief"),
            Message("system", "really"),
            Message("user", "ab"),
            Message("assistant", "ok"),
        ),
        max_tokens=12,
        temperature=0.0,
        top_p=0.5,
        seed=7,
        stop=("\n",),
    )
    assert wire.call.chat


def test_defaults_and_max_completion_tokens() -> None:
    wire = parse_chat(chat(), max_tokens=LIMIT)
    assert wire.call.max_tokens is None and wire.call.temperature == 1.0 and wire.call.top_p == 1.0
    assert not wire.stream and wire.call.stop == ()
    assert parse_chat(chat(max_completion_tokens=5), max_tokens=LIMIT).call.max_tokens == 5


def test_a_completion_body() -> None:
    wire = parse_completion(
        {"model": "smol", "prompt": ["Once upon"], "max_tokens": 3, "stop": ["a", "b"]},
        max_tokens=LIMIT,
    )
    assert wire.call == GenerateCall(prompt="Once upon", max_tokens=3, stop=("a", "b"))
    assert not wire.call.chat


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"messages": []}, "messages", "non-empty list"),
        ({"messages": "hi"}, "messages", "non-empty list"),
        ({"messages": ["hi"]}, "messages[0]", "role"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", "'wizard'"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role", "tools"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content", "string"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "string"),
        ({"temperature": -0.1}, "temperature", "[0, 2]"),
        ({"temperature": "hot"}, "temperature", "'hot'"),
        ({"temperature": True}, "temperature", "True"),
        ({"top_p": 0}, "top_p", "(0, 1]"),
        ({"top_p": 1.5}, "top_p", "(0, 1]"),
        ({"max_tokens": 0}, "max_tokens", ">= 1"),
        ({"max_tokens": -3}, "max_tokens", ">= 1"),
        ({"max_tokens": 2.5}, "max_tokens", "integer"),
        ({"max_tokens": LIMIT + 1}, "max_tokens", f"limit of {LIMIT}"),
        ({"max_completion_tokens": 0}, "max_completion_tokens", ">= 1"),
        ({"n": 2}, "n", "n=1"),
        ({"stop": ["a"] * 5}, "stop", "up to 4"),
        ({"stop": [""]}, "stop", "non-empty"),
        ({"stop": 3}, "stop", "string"),
        ({"seed": "x"}, "seed", "integer"),
        ({"stream": "yes"}, "stream", "true or false"),
        ({"stream_options": 1}, "stream_options", "include_usage"),
        ({"logprobs": True}, "logprobs", "not supported"),
        ({"presence_penalty": 1}, "presence_penalty", "not supported"),
        ({"tools": [{}]}, "tools", "unsupported parameter"),
        ({"model": ""}, "model", "served model"),
        ({"model": 3}, "model", "served model"),
    ],
)
def test_bad_chat_fields_are_refused_by_name(
    fields: dict[str, Any], param: str, words: str
) -> None:
    with pytest.raises(ParamError) as refused:
        parse_chat(chat(**fields), max_tokens=LIMIT)
    assert refused.value.param == param and refused.value.status_code == 400
    assert refused.value.message.startswith(f"{param}: ") and words in refused.value.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "prompt"),
        ({"model": "m", "prompt": ""}, "prompt"),
        ({"model": "m", "prompt": ["a", "b"]}, "prompt"),
        ({"model": "m", "prompt": [1, 2]}, "prompt"),
        ({"model": "m", "prompt": "a", "echo": True}, "echo"),
        ({"model": "m", "prompt": "a", "suffix": "z"}, "suffix"),
        ({"model": "m", "prompt": "a", "best_of": 2}, "best_of"),
        ({"model": "m", "prompt": "a", "messages": []}, "messages"),
    ],
)
def test_bad_completion_bodies(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ParamError) as refused:
        parse_completion(body, max_tokens=LIMIT)
    assert refused.value.param == param


def test_a_body_that_is_no_object() -> None:
    for parse in (parse_chat, parse_completion):
        with pytest.raises(MalformedRequestError, match="JSON object"):
            parse([1], max_tokens=LIMIT)


def test_errors_in_openai_shape() -> None:
    assert is_openai_path("/v1/chat/completions") and is_openai_path("/v1/models/")
    assert not is_openai_path("/v1/models/digits") and not is_openai_path("/v2/models/x/infer")
    assert openai_status(422) == 400 and openai_status(404) == 404
    assert error_body("no such model", status=404, code="model_not_found") == {
        "error": {
            "message": "no such model",
            "type": "not_found_error",
            "param": None,
            "code": "model_not_found",
        }
    }
    assert error_body("x", status=429)["error"]["type"] == "rate_limit_error"
    assert error_body("x", status=503)["error"]["type"] == "server_error"
    assert isinstance(ParamError("n", "no"), InvalidInputError)


def _event(data: bytes) -> dict[str, Any]:
    assert data.startswith(b"data: ") and data.endswith(b"\n\n")
    parsed: dict[str, Any] = json.loads(data[6:])
    return parsed


def test_chat_answers_and_chunks() -> None:
    answer = Answer("smol", chat=True)
    assert answer.id.startswith("chatcmpl-")
    body = answer.response("Hello", "stop", 5, 2)
    assert body["object"] == "chat.completion" and body["model"] == "smol"
    assert body["choices"] == [
        {
            "index": 0,
            "finish_reason": "stop",
            "logprobs": None,
            "message": {"role": "assistant", "content": "Hello"},
        }
    ]
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    first = _event(answer.chunk("", first=True))
    assert first["object"] == "chat.completion.chunk" and first["id"] == answer.id
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert _event(answer.chunk("lo"))["choices"][0]["delta"] == {"content": "lo"}
    last = _event(answer.chunk("", "length"))["choices"][0]
    assert last["delta"] == {} and last["finish_reason"] == "length"
    used = _event(answer.usage_chunk(5, 2))
    assert used["choices"] == [] and used["usage"]["total_tokens"] == 7


def test_completion_answers_and_the_model_list() -> None:
    answer = Answer("smol", chat=False)
    body = answer.response("on a time", "length", 3, 4)
    assert body["object"] == "text_completion" and body["choices"][0]["text"] == "on a time"
    assert _event(answer.chunk("on"))["choices"][0]["text"] == "on"
    assert DONE == b"data: [DONE]\n\n" and sse({"a": 1}) == b'data: {"a":1}\n\n'
    listed = models_list(["smol"])
    assert listed["object"] == "list"
    assert listed["data"] == [
        {"id": "smol", "object": "model", "created": 0, "owned_by": "inhouse"}
    ]
