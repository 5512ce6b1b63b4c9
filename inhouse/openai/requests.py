"""Parse and validate OpenAI chat and completion bodies into a :class:`WireRequest`.

Every wrong field is a :class:`~inhouse.openai.errors.ParamError` (400) naming the field and
what is allowed; parameters that would change the answer and are not supported (``n`` > 1,
tools, log probabilities, penalties) are refused rather than ignored. Limits that need the
model (the prompt's length against the context window) are checked by the kind in the
replica.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from inhouse.errors import MalformedRequestError
from inhouse.kinds.generating import GenerateCall, Message, Role
from inhouse.openai.errors import ParamError

MAX_STOP = 4
MAX_STOP_CHARS = 256
ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}
_COMMON = {"model", "max_tokens", "temperature", "top_p", "n", "stop", "seed", "stream"}
_COMMON |= {"stream_options", "user", "frequency_penalty", "presence_penalty", "logprobs"}
_CHAT = _COMMON | {"messages", "max_completion_tokens", "top_logprobs", "metadata", "store"}
_COMPLETION = _COMMON | {"prompt", "echo", "suffix", "best_of"}
_ZERO_OR_ABSENT = ("frequency_penalty", "presence_penalty")


@dataclass(frozen=True)
class WireRequest:
    """A parsed request: the model asked for, what to generate and how to answer."""

    model: str
    call: GenerateCall
    stream: bool = False
    include_usage: bool = False


def parse_chat(body: Any, *, max_tokens: int) -> WireRequest:
    """A ``POST /v1/chat/completions`` body; ``max_tokens`` is the most a request may ask."""
    fields = _object(body, _CHAT)
    if fields.get("top_logprobs") is not None:
        raise ParamError("top_logprobs", "log probabilities are not supported")
    limit = fields.get("max_completion_tokens", fields.get("max_tokens"))
    name = "max_completion_tokens" if "max_completion_tokens" in fields else "max_tokens"
    messages = _messages(fields.get("messages"))
    return _request(fields, GenerateCall(messages=messages), name, limit, max_tokens)


def parse_completion(body: Any, *, max_tokens: int) -> WireRequest:
    """A ``POST /v1/completions`` body; ``max_tokens`` is the most a request may ask."""
    fields = _object(body, _COMPLETION)
    if fields.get("echo"):
        raise ParamError("echo", "echoing the prompt is not supported")
    if fields.get("suffix") is not None:
        raise ParamError("suffix", "suffixes (insertion) are not supported")
    if fields.get("best_of") not in (None, 1):
        raise ParamError("best_of", "only 1 is supported")
    prompt = fields.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise ParamError("prompt", "expected a non-empty string (one prompt per request)")
    call = GenerateCall(prompt=prompt)
    return _request(fields, call, "max_tokens", fields.get("max_tokens"), max_tokens)


def _object(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise MalformedRequestError("the request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ParamError(unknown[0], "unknown or unsupported parameter")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ParamError("model", "expected the name of a served model (a string)")
    return body


def _request(
    fields: dict[str, Any], call: GenerateCall, name: str, asked: Any, max_tokens: int
) -> WireRequest:
    for param in _ZERO_OR_ABSENT:
        if fields.get(param) not in (None, 0, 0.0):
            raise ParamError(param, "penalties are not supported (leave it out or 0)")
    if fields.get("logprobs") not in (None, False):
        raise ParamError("logprobs", "log probabilities are not supported")
    if fields.get("n") not in (None, 1):
        raise ParamError("n", "only one choice per request (n=1) is supported")
    options = fields.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise ParamError("stream_options", "expected an object like {'include_usage': true}")
    include_usage = bool(options and options.get("include_usage"))
    return WireRequest(
        model=fields["model"],
        call=GenerateCall(
            messages=call.messages,
            prompt=call.prompt,
            max_tokens=_max_tokens(name, asked, max_tokens),
            temperature=_number(fields, "temperature", 1.0, 0.0, 2.0, low_open=False),
            top_p=_number(fields, "top_p", 1.0, 0.0, 1.0, low_open=True),
            seed=_seed(fields.get("seed")),
            stop=_stop(fields.get("stop")),
        ),
        stream=_flag(fields, "stream"),
        include_usage=include_usage,
    )


def _messages(raw: Any) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise ParamError("messages", "expected a non-empty list of {role, content} objects")
    messages = []
    for i, item in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            raise ParamError(where, "expected an object with 'role' and 'content'")
        role = item.get("role")
        if role not in ROLES:
            raise ParamError(
                f"{where}.role",
                f"unknown role {_shown(role)}; use one of {', '.join(ROLES)} "
                "(tools are not supported)",
            )
        messages.append(Message(ROLES[role], _content(f"{where}.content", item.get("content"))))
    return tuple(messages)


def _content(where: str, content: Any) -> str:
    """A message's text: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        return "".join(p["text"] for p in content)
    raise ParamError(where, "expected a string (or a list of text parts)")


def _max_tokens(name: str, value: Any, limit: int) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise ParamError(name, f"expected an integer >= 1, got {_shown(value)}")
    if value > limit:
        raise ParamError(name, f"{value} is over this server's limit of {limit} tokens")
    return int(value)


def _number(
    fields: dict[str, Any], name: str, default: float, low: float, high: float, *, low_open: bool
) -> float:
    value = fields.get(name)
    if value is None:
        return default
    shown = f"({low:g}, {high:g}]" if low_open else f"[{low:g}, {high:g}]"
    ok = _is_number(value) and (low < value if low_open else low <= value) and value <= high
    if not ok:
        raise ParamError(name, f"expected a number in {shown}, got {_shown(value)}")
    return float(value)


def _seed(value: Any) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or not -(2**63) <= value < 2**64:
        raise ParamError("seed", f"expected an integer, got {_shown(value)}")
    return int(value)


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if (
        not isinstance(stops, list)
        or len(stops) > MAX_STOP
        or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stops)
    ):
        raise ParamError(
            "stop",
            f"expected a string or a list of up to {MAX_STOP} non-empty strings "
            f"(each at most {MAX_STOP_CHARS} characters)",
        )
    return tuple(stops)


def _flag(fields: dict[str, Any], name: str) -> bool:
    value = fields.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ParamError(name, f"expected true or false, got {_shown(value)}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
