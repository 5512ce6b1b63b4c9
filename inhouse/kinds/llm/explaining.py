"""The llm kind's explanations (``POST /v1/models/{name}:explain``): token attributions of an
answer to its prompt (:mod:`inhouse.explain.llm`), as JSON or a PNG heat map.

Body::

    {"prompt": "text"}  or  {"messages": [{"role": "user", "content": "..."}, ...]},
    "target": "the answer to explain" (optional: else the model's greedy answer),
    "method": "feature_ablation" (default) | "shapley" | "integrated_gradients",
    "max_new_tokens": 16 (1..64, the greedy answer's length limit),
    "samples": 4 (shapley: 1..25 random orders), "steps": 16 (integrated gradients: 2..64)

Explanations run on the float version: an int8 champion is explained through the float parent
it was quantized from (gradients need float weights), and the answer names both versions.
``serving.py`` delegates its ``load_explained``, ``parse_explain``, ``explain`` and
``explain_png`` to the functions here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inhouse.errors import InvalidInputError

if TYPE_CHECKING:
    from inhouse.explain.llm import TokenAttribution
    from inhouse.kinds.llm.loaded import LoadedLLM
    from inhouse.registry import ModelVersion, Registry

METHODS = ("feature_ablation", "shapley", "integrated_gradients")
ROLES = ("system", "user", "assistant")
MAX_NEW_TOKENS = 64
MAX_PROMPT_TOKENS = 512  # every prompt token is one more forward pass (ablation) or feature
MAX_TEXT_CHARS = 32_768
LIMITS = {"max_new_tokens": (1, MAX_NEW_TOKENS, 16), "samples": (1, 25, 4), "steps": (2, 64, 16)}
FIELDS = frozenset({"prompt", "messages", "target", "method", *LIMITS})


@dataclass(frozen=True)
class LLMExplainCall:
    """A checked explain request."""

    prompt: str | None
    messages: tuple[tuple[str, str], ...] | None
    target: str | None
    method: str
    max_new_tokens: int
    samples: int
    steps: int
    fmt: str


@dataclass
class ExplainedLLM:
    """The float version explanations run on, and the served version it stands for."""

    llm: LoadedLLM
    reference: int

    @property
    def model(self) -> str:
        return self.llm.model

    @property
    def version(self) -> int:
        return self.reference


def load_explained(registry: Registry, info: ModelVersion) -> ExplainedLLM:
    """The float version behind ``info`` (itself, or the parent of an int8 version), loaded."""
    from inhouse.kinds.llm.loaded import load_llm
    from inhouse.registry.parents import float_version

    return ExplainedLLM(load_llm(registry, float_version(registry, info)), info.version)


def _text(body: Mapping[str, Any], field: str, *, required: bool) -> str | None:
    value = body.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{field} must be a non-empty string")
    if len(value) > MAX_TEXT_CHARS:
        raise InvalidInputError(f"{field} is longer than {MAX_TEXT_CHARS} characters")
    return value


def _messages(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise InvalidInputError("messages must be a non-empty list of {role, content} objects")
    checked = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise InvalidInputError(f"messages[{i}] must be an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise InvalidInputError(f"messages[{i}].role must be one of {', '.join(ROLES)}")
        if not isinstance(content, str) or len(content) > MAX_TEXT_CHARS:
            raise InvalidInputError(f"messages[{i}].content must be a string")
        checked.append((str(role), content))
    return tuple(checked)


def _bounded(body: Mapping[str, Any], field: str) -> int:
    low, high, default = LIMITS[field]
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInputError(f"{field} must be an integer from {low} to {high}")
    return value


def parse_explain(
    body: Any, info: Mapping[str, Any], *, max_instances: int, fmt: str
) -> LLMExplainCall:
    """Check an explain body (see the module docstring); one prompt per call.

    Raises:
        InvalidInputError: naming the field that is wrong.
    """
    if fmt not in ("json", "png"):
        raise InvalidInputError(f"format must be json or png, not {fmt!r}")
    if max_instances < 1:
        raise InvalidInputError("this deployment explains no instances (max_instances < 1)")
    if not isinstance(body, dict):
        raise InvalidInputError("the explain body must be a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise InvalidInputError(
            f"unknown field {unknown[0]!r}; fields: {', '.join(sorted(FIELDS))}"
        )
    if ("prompt" in body) == ("messages" in body):
        raise InvalidInputError("give exactly one of prompt or messages")
    method = body.get("method", "feature_ablation")
    if method not in METHODS:
        raise InvalidInputError(f"method must be one of {', '.join(METHODS)}")
    return LLMExplainCall(
        prompt=_text(body, "prompt", required=True) if "prompt" in body else None,
        messages=_messages(body["messages"]) if "messages" in body else None,
        target=_text(body, "target", required=False),
        method=str(method),
        max_new_tokens=_bounded(body, "max_new_tokens"),
        samples=_bounded(body, "samples"),
        steps=_bounded(body, "steps"),
        fmt=fmt,
    )


def attribution(loaded: ExplainedLLM, call: LLMExplainCall) -> TokenAttribution:
    """The attributions of ``call`` on the loaded float model."""
    from inhouse.explain.llm import attribute_tokens

    llm = loaded.llm
    if call.messages is not None:
        ids = llm.chat_prompt_ids([{"role": r, "content": c} for r, c in call.messages])
    else:
        ids = llm.prompt_ids(call.prompt or "")
    target = None
    if call.target is not None:
        target = [int(i) for i in llm.tokenizer(call.target, add_special_tokens=False)["input_ids"]]
    answer = len(target) if target is not None else call.max_new_tokens
    limit = min(MAX_PROMPT_TOKENS, llm.context_length - answer)
    if len(ids) > limit:
        raise InvalidInputError(
            f"the prompt has {len(ids)} tokens; explanations take at most {limit} "
            f"(context {llm.context_length}, answer {answer})"
        )
    return attribute_tokens(
        llm.module,
        llm.tokenizer,
        ids,
        target_ids=target,
        method=call.method,
        max_new_tokens=call.max_new_tokens,
        eos_ids=llm.eos_token_ids,
        samples=call.samples,
        steps=call.steps,
    )


def explain(loaded: ExplainedLLM, call: LLMExplainCall, *, max_instances: int) -> dict[str, Any]:
    """The JSON answer: tokens, per-token and sequence attributions, the answer text."""
    result = attribution(loaded, call)
    return {
        "model": loaded.model,
        "version": loaded.reference,
        "explained_version": loaded.llm.version,
        "method": result.method,
        "prompt_tokens": result.prompt_tokens,
        "answer_tokens": result.answer_tokens,
        "answer": loaded.llm.tokenizer.decode(result.answer_ids),
        "generated": result.generated,
        "token_attributions": [[float(v) for v in row] for row in result.token],
        "sequence_attributions": [float(v) for v in result.sequence],
        "latency_ms": 1000.0 * result.seconds,
    }


def explain_png(loaded: ExplainedLLM, call: LLMExplainCall, *, max_instances: int) -> bytes:
    """The heat map of the attributions (answer tokens x prompt tokens)."""
    from inhouse.explain.llm import heatmap_png

    result = attribution(loaded, call)
    title = f"{loaded.model} v{loaded.reference}: {result.method}"
    return heatmap_png(result, title=title)
