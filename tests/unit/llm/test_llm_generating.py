"""The LLM kind's generating and serving parts on the tiny model, without Ray: prompts checked
against the context window and the limits, answers streamed in pieces that end with why,
stop strings, and the predict routes refused with a pointer to the OpenAI route."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from inhouse.config import LLMSettings
from inhouse.errors import InvalidInputError, WrongEndpointError
from inhouse.kinds import kind_named
from inhouse.kinds.generating import GenerateCall, Generated, Message
from inhouse.kinds.llm.generating import GENERATING, ContextLengthError, ServedLLM, serve_llm
from inhouse.kinds.llm.serving import SERVING
from inhouse.kinds.llm.versions import import_llm
from inhouse.registry import Registry

LIMITS = LLMSettings(max_sequences=2, max_prompt_tokens=80, max_tokens=64, default_max_tokens=9)
HI = (Message("system", "be brief"), Message("user", "the cat sees the moon"))


@pytest.fixture()
def served(registry: Registry, tiny: Path, tmp_path: Path) -> Iterator[ServedLLM]:
    info = import_llm(registry, tiny, name="tiny", gguf_cache=tmp_path / "gguf", max_context=None)
    loaded = serve_llm(registry, info, LIMITS)
    yield loaded
    loaded.engine.close()


def answer(served: ServedLLM, call: GenerateCall) -> list[Generated]:
    async def collect() -> list[Generated]:
        prepared = GENERATING.prepare(served, call)
        return [piece async for piece in GENERATING.generate(served, prepared)]

    return asyncio.run(collect())


def test_a_chat_is_tokenised_through_the_template_within_the_limits(served: ServedLLM) -> None:
    prepared = GENERATING.prepare(served, GenerateCall(messages=HI))
    messages = [{"role": m.role, "content": m.content} for m in HI]
    assert prepared.prompt_ids == served.llm.chat_prompt_ids(messages)
    assert prepared.sampling.max_tokens == LIMITS.default_max_tokens  # none asked: the default
    plain = GENERATING.prepare(served, GenerateCall(prompt="the cat", max_tokens=5, top_p=0.5))
    assert plain.prompt_ids == served.llm.prompt_ids("the cat") and plain.prompt_tokens >= 2
    assert plain.sampling.max_tokens == 5 and plain.sampling.top_p == 0.5


def test_prompts_over_the_limits_are_refused_naming_them(served: ServedLLM) -> None:
    long = GenerateCall(prompt="the moon " * 60)
    with pytest.raises(ContextLengthError, match="the limit is 80 tokens") as refused:
        GENERATING.prepare(served, long)
    assert refused.value.code == "context_length_exceeded"
    assert isinstance(refused.value, InvalidInputError)
    context = served.llm.context_length
    with pytest.raises(ContextLengthError, match=f"context window of {context} tokens"):
        GENERATING.prepare(served, GenerateCall(prompt="the cat", max_tokens=context))


def test_an_answer_streams_in_pieces_and_ends_with_why(served: ServedLLM) -> None:
    call = GenerateCall(messages=HI, max_tokens=12, temperature=0)
    pieces = answer(served, call)
    assert [p.finish_reason for p in pieces[:-1]] == [None] * (len(pieces) - 1)
    last = pieces[-1]
    assert last.finish_reason in ("stop", "length") and 1 <= last.completion_tokens <= 12
    assert (last.finish_reason == "length") == (last.completion_tokens == 12)
    counts = [p.completion_tokens for p in pieces]
    assert counts == sorted(counts)
    again = answer(served, call)
    assert "".join(p.text for p in again) == "".join(p.text for p in pieces)  # greedy
    assert GENERATING.stats(served)["running"] == 0


def test_a_stop_string_ends_the_answer_before_it(served: ServedLLM) -> None:
    call = GenerateCall(prompt="the cat sees", max_tokens=40, temperature=0)
    text = "".join(p.text for p in answer(served, call))
    if len(text.strip()) < 4:
        pytest.skip(f"the tiny model's greedy answer is too short to cut: {text!r}")
    middle = len(text) // 2
    stop = text[middle : middle + 2]
    cut = answer(
        served, GenerateCall(prompt="the cat sees", max_tokens=40, temperature=0, stop=(stop,))
    )
    assert "".join(p.text for p in cut) == text[: text.find(stop)]
    assert cut[-1].finish_reason == "stop" and cut[-1].completion_tokens < 40


def test_the_llm_kind_generates_and_other_kinds_say_which_do() -> None:
    assert kind_named("llm").has_part("generating")
    with pytest.raises(InvalidInputError, match="cannot be asked to generate text.*llm"):
        kind_named("tabular").generating  # noqa: B018 - the property raises


def test_predict_bodies_are_refused_with_the_route_to_use(served: ServedLLM) -> None:
    info = SERVING.describe(served)
    assert info["context_length"] == served.llm.context_length and info["platform"] == "llm"
    for parse in (SERVING.parse_v1, SERVING.parse_v2):
        with pytest.raises(WrongEndpointError, match="/v1/chat/completions") as refused:
            parse({"instances": ["hi"]}, info, max_instances=4)
        assert refused.value.status_code == 400
    assert SERVING.model_metadata(model="tiny", info=info)["versions"] == [str(served.version)]
