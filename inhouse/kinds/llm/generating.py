"""Generating text with an LLM version: ``GENERATING`` (a :class:`GeneratingKind`).

A loaded version (:class:`ServedLLM`) is the model (:func:`~inhouse.kinds.llm.loaded.load_llm`)
and its continuous-batching :class:`~inhouse.kinds.llm.engine.GenerationEngine`, sized by the
settings' ``llm`` section. ``prepare`` tokenises a request (a chat through the model's chat
template) and checks it against the context window and the limits; ``generate`` streams the
engine's tokens through a :class:`~inhouse.kinds.llm.detokenize.Detokenizer` (stop strings).
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inhouse.errors import InvalidInputError
from inhouse.kinds.generating import FinishReason, GenerateCall, Generated, GeneratingKind
from inhouse.kinds.llm.detokenize import Detokenizer

if TYPE_CHECKING:
    from inhouse.config import LLMSettings, Settings
    from inhouse.kinds.llm.engine import GenerationEngine, Sampling
    from inhouse.kinds.llm.loaded import LoadedLLM
    from inhouse.registry import ModelVersion, Registry


class ContextLengthError(InvalidInputError):
    """A prompt (with the tokens asked for) does not fit the model's context or the limits."""

    code = "context_length_exceeded"


@dataclass
class ServedLLM:
    """An LLM version loaded for generation, with its engine and the limits it serves under."""

    llm: LoadedLLM
    engine: GenerationEngine
    limits: LLMSettings

    @property
    def model(self) -> str:
        return self.llm.model

    @property
    def version(self) -> int:
        return self.llm.version


@dataclass(frozen=True)
class PreparedLLM:
    """A request tokenised and checked: what the engine runs."""

    prompt_ids: list[int]
    sampling: Sampling
    stop: tuple[str, ...]

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)


def serve_llm(registry: Registry, info: ModelVersion, limits: LLMSettings) -> ServedLLM:
    """Load ``info`` and start its engine (closed when the loaded version is dropped)."""
    from inhouse.kinds.llm.engine import GenerationEngine
    from inhouse.kinds.llm.loaded import load_llm

    llm = load_llm(registry, info)
    engine = GenerationEngine(
        llm.module,
        eos_token_ids=tuple(llm.eos_token_ids),
        context_length=llm.context_length,
        max_sequences=limits.max_sequences,
        device=llm.device,
        threads=limits.threads,
    )
    served = ServedLLM(llm, engine, limits)
    weakref.finalize(served, engine.close)
    return served


class LLMGenerating:
    """The LLM kind's ``GeneratingKind``."""

    def load(self, registry: Registry, info: ModelVersion, settings: Settings) -> ServedLLM:
        return serve_llm(registry, info, settings.llm)

    def prepare(self, loaded: ServedLLM, call: GenerateCall) -> PreparedLLM:
        from inhouse.kinds.llm.engine import Sampling

        llm, limits = loaded.llm, loaded.limits
        if call.messages is not None:
            messages = [{"role": m.role, "content": m.content} for m in call.messages]
            ids = list(llm.chat_prompt_ids(messages))
        else:
            ids = list(llm.prompt_ids(call.prompt or ""))
        context = llm.context_length
        limit = min(limits.max_prompt_tokens, context - 1)
        if len(ids) > limit:
            raise ContextLengthError(
                f"the prompt is {len(ids)} tokens; the limit is {limit} tokens "
                f"({loaded.model}'s context window is {context} tokens, "
                f"max_prompt_tokens {limits.max_prompt_tokens})"
            )
        room = context - len(ids)
        max_tokens = call.max_tokens
        if max_tokens is None:
            max_tokens = min(limits.default_max_tokens, room)
        elif max_tokens > room:
            raise ContextLengthError(
                f"the prompt ({len(ids)} tokens) and max_tokens ({max_tokens}) are over "
                f"{loaded.model}'s context window of {context} tokens: ask for at most {room}"
            )
        sampling = Sampling(
            max_tokens=max_tokens, temperature=call.temperature, top_p=call.top_p, seed=call.seed
        )
        return PreparedLLM(ids, sampling, call.stop)

    async def generate(self, loaded: ServedLLM, prepared: PreparedLLM) -> AsyncIterator[Generated]:
        detokenizer = Detokenizer(loaded.llm.tokenizer, prepared.stop)
        count = 0
        tokens = loaded.engine.stream(prepared.prompt_ids, prepared.sampling)
        try:
            async for token in tokens:
                count += 1
                text = detokenizer.push(token)
                if detokenizer.stopped:
                    yield Generated(text, count, "stop")
                    return
                if text:
                    yield Generated(text, count)
        finally:  # on every way out (a stop string, the consumer gone): the slot frees now
            close = getattr(tokens, "aclose", None)
            if close is not None:
                await close()
        finish: FinishReason = "length" if count >= prepared.sampling.max_tokens else "stop"
        yield Generated(detokenizer.flush(), count, finish)

    def stats(self, loaded: ServedLLM) -> dict[str, Any]:
        return dict(loaded.engine.stats())


GENERATING: GeneratingKind[ServedLLM, PreparedLLM] = LLMGenerating()
