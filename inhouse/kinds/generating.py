"""The generating half of a model kind (``GeneratingKind``): text out of a prompt, streamed.

A kind whose versions write text (``kinds/<name>/generating.py``, whose ``GENERATING`` is one
of these; ``ModelKind.generating``) is served behind the OpenAI routes of the ingress
(``/v1/chat/completions``, ``/v1/completions``); ``serve/`` asks the kind and never its name::

    ingress   wire body -> GenerateCall (inhouse.openai), access, SSE or one JSON answer
    replica   load (with the settings) / prepare / generate (an async iterator of pieces)

:class:`GenerateCall` is what a request asks for, independent of the wire format; each
:class:`Generated` is a piece of the answer's text with the tokens generated so far, the last
one carrying why it ended (``stop``: end of sequence or a stop string; ``length``: the
request's ``max_tokens``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

if TYPE_CHECKING:
    from inhouse.config import Settings
    from inhouse.registry import ModelVersion, Registry

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Message:
    """One message of a chat."""

    role: Role
    content: str


@dataclass(frozen=True)
class GenerateCall:
    """A parsed generation request: a chat (``messages``) or a plain ``prompt``.

    ``max_tokens`` None means the settings' default (bounded by the context window).
    ``temperature`` 0 is greedy decoding; ``seed`` makes sampling repeatable.
    """

    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def chat(self) -> bool:
        return self.messages is not None


@dataclass(frozen=True)
class Generated:
    """A piece of a generated answer: its text, the tokens generated so far and, on the last
    piece only, why generation ended."""

    text: str
    completion_tokens: int
    finish_reason: FinishReason | None = None


class Prepared(Protocol):
    """A request checked and tokenised by the kind (what ``generate`` runs)."""

    @property
    def prompt_tokens(self) -> int: ...


G = TypeVar("G")  # the kind's loaded version (with what generates on it)
P = TypeVar("P", bound=Prepared)


class GeneratingKind(Protocol[G, P]):
    """What the ingress and the replica call for a kind that generates text."""

    def load(self, registry: Registry, info: ModelVersion, settings: Settings) -> G:
        """Load ``info`` for generation within the ``settings``' limits (concurrent
        sequences, prompt and completion lengths)."""
        ...

    def prepare(self, loaded: G, call: GenerateCall) -> P:
        """Tokenise ``call`` (a chat through the model's template) and check it against the
        context window and the limits; an :class:`~inhouse.errors.InvalidInputError` naming
        the limit otherwise."""
        ...

    def generate(self, loaded: G, prepared: P) -> AsyncIterator[Generated]:
        """The answer, piece by piece; closing the iterator stops generating at once (the
        sequence's place is freed for the next request)."""
        ...

    def stats(self, loaded: G) -> dict[str, Any]:
        """Counters of the generation running on ``loaded`` (running, waiting sequences...)."""
        ...
