"""How the next token of each row is chosen: greedy at temperature 0, else temperature and
nucleus (top-p) sampling from the sequence's own seeded generator."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from inhouse.errors import InvalidInputError


@dataclass(frozen=True)
class Sampling:
    """How one sequence is generated.

    Attributes:
        max_tokens: the most tokens generated (an end-of-sequence token ends it sooner).
        temperature: 0 picks the most likely token; higher flattens the distribution.
        top_p: sample only from the most likely tokens whose probabilities add up to this.
        seed: the same seed (and prompt) gives the same tokens; None: a random one.
    """

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise InvalidInputError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if not 0 <= self.temperature <= 100:
            raise InvalidInputError(
                f"temperature must be between 0 and 100, got {self.temperature}"
            )
        if not 0 < self.top_p <= 1:
            raise InvalidInputError(f"top_p must be above 0 and at most 1, got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def generator(self) -> torch.Generator | None:
        """The sequence's own CPU generator (None when greedy)."""
        if self.greedy:
            return None
        seed = self.seed if self.seed is not None else secrets.randbits(63)
        return torch.Generator().manual_seed(seed % 2**63)


def _sample_row(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> int:
    """One token drawn from ``logits`` ``[vocab]`` (float, CPU)."""
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    if sampling.top_p < 1:
        sorted_probs, order = torch.sort(probs, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the tokens above each
        sorted_probs[before >= sampling.top_p] = 0  # the first token is always kept
        choice = torch.multinomial(sorted_probs, 1, generator=generator)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=generator))


def choose(
    logits: torch.Tensor,
    samplings: Sequence[Sampling],
    generators: Sequence[torch.Generator | None],
) -> list[int]:
    """The next token of each row of ``logits`` ``[rows, vocab]``."""
    tokens = logits.argmax(dim=-1).tolist()
    sampled = [row for row, sampling in enumerate(samplings) if not sampling.greedy]
    if sampled:
        rows = logits[sampled].cpu()
        for at, row in enumerate(sampled):
            tokens[row] = _sample_row(rows[at], samplings[row], generators[row])
    return tokens
