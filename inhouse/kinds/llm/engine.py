"""Continuous batching: one background thread generates for every sequence of a replica.

Each loop iteration drops the rows whose sequence ended or whose consumer left, admits waiting
sequences up to ``max_sequences`` (prefilled together, then merged into the running batch),
and runs one decode forward pass for all rows. Each sampled token goes to its consumer's
asyncio queue; an error in a forward pass reaches the consumers it concerns as an exception,
and the engine keeps serving the others.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from inhouse.errors import InvalidInputError, UnavailableError
from inhouse.kinds.llm.batch_cache import Batch, decode, merge, prefill
from inhouse.kinds.llm.sampling import Sampling, choose

__all__ = ["GenerationEngine", "Sampling"]

_END = object()  # the sequence ended (queue sentinel)


@dataclass(eq=False)
class _Sequence:
    """One request: its prompt, how it samples, and where its tokens go."""

    prompt: list[int]
    sampling: Sampling
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    generator: torch.Generator | None = None
    produced: int = 0
    done: bool = False  # ended: eos, max_tokens or an error (set by the engine)
    cancelled: bool = False  # its consumer left (set by the consumer)

    def send(self, item: object) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the consumer's event loop is closed: nobody listens
            self.cancelled = True

    def end(self, item: object = _END) -> None:
        self.done = True
        self.send(item)


class GenerationEngine:
    """Generates tokens for many concurrent sequences of one causal LM, sharing forward passes.

    Args:
        module: a transformers causal LM (eval mode), on the device it runs on.
        eos_token_ids: tokens that end a sequence (not yielded).
        context_length: the model's context window (prompt + max_tokens must fit).
        max_sequences: sequences generated at once; more wait their turn.
        device: where inputs go (default: the module's parameters' device).
        threads: torch CPU threads of the engine's thread (default: the creating thread's).
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        eos_token_ids: tuple[int, ...],
        context_length: int,
        max_sequences: int,
        device: torch.device | str | None = None,
        threads: int | None = None,
    ) -> None:
        if max_sequences < 1 or context_length < 2:
            raise ValueError("max_sequences must be at least 1 and context_length at least 2")
        self._module = module
        self._device = torch.device(device) if device else next(module.parameters()).device
        self._eos = frozenset(eos_token_ids)
        self._context = context_length
        self._max = max_sequences
        vocab = getattr(getattr(module, "config", None), "vocab_size", None)
        self._vocab = int(vocab) if vocab is not None else None
        self._threads = threads or torch.get_num_threads()
        self._cond = threading.Condition()
        self._waiting: deque[_Sequence] = deque()
        self._running: list[_Sequence] = []  # one per row of self._batch, in order
        self._batch: Batch | None = None
        self._steps = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="llm-engine", daemon=True)
        self._thread.start()

    def check(self, prompt_ids: Sequence[int], sampling: Sampling) -> None:
        """Refuse a request that cannot run (what :meth:`stream` raises before any token).

        Raises:
            InvalidInputError: an empty prompt, a token id outside the vocabulary, or a prompt
                plus max_tokens over the context window.
        """
        if not prompt_ids:
            raise InvalidInputError("the prompt is empty")
        if self._vocab is not None and not all(0 <= t < self._vocab for t in prompt_ids):
            raise InvalidInputError(f"prompt token ids must be in [0, {self._vocab})")
        if len(prompt_ids) + sampling.max_tokens > self._context:
            raise InvalidInputError(
                f"the prompt ({len(prompt_ids)} tokens) plus max_tokens ({sampling.max_tokens}) "
                f"is over the model's context window of {self._context} tokens"
            )

    async def stream(self, prompt_ids: Sequence[int], sampling: Sampling) -> AsyncIterator[int]:
        """Yield the generated token ids of one sequence as the engine produces them.

        Closing the iterator (``aclose``, a cancelled task) frees the sequence's slot before
        the engine's next decode step.

        Raises:
            InvalidInputError: see :meth:`check`.
            UnavailableError: the engine is closed.
        """
        self.check(prompt_ids, sampling)
        seq = _Sequence(
            list(prompt_ids), sampling, asyncio.get_running_loop(), generator=sampling.generator()
        )
        with self._cond:
            if self._closed:
                raise UnavailableError("the generation engine is closed")
            self._waiting.append(seq)
            self._cond.notify()
        try:
            while True:
                item = await seq.queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if not seq.done:
                with self._cond:
                    seq.cancelled = True
                    if seq in self._waiting:
                        self._waiting.remove(seq)

    def stats(self) -> dict[str, int]:
        """Sequences running and waiting now, decode steps so far, the concurrency limit."""
        with self._cond:
            return {
                "running": sum(not (seq.done or seq.cancelled) for seq in self._running),
                "waiting": len(self._waiting),
                "steps": self._steps,
                "max_sequences": self._max,
            }

    def close(self) -> None:
        """Stop the engine's thread (after the step under way); sequences not finished get an
        ``UnavailableError``. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    # -- the engine's thread --------------------------------------------------------------

    def _run(self) -> None:
        torch.set_num_threads(self._threads)
        with torch.inference_mode():
            while True:
                self._drop_ended()
                with self._cond:
                    while not self._closed and not self._waiting and not self._running:
                        self._cond.wait()
                    if self._closed:
                        break
                    admitted: list[_Sequence] = []
                    while self._waiting and len(self._running) + len(admitted) < self._max:
                        admitted.append(self._waiting.popleft())
                try:
                    self._admit([seq for seq in admitted if not seq.cancelled])
                    self._decode()
                except Exception as exc:  # a bug of the engine itself: fail, never hang
                    for seq in self._running + admitted:
                        seq.end(exc)
                    with self._cond:
                        self._running, self._batch = [], None
        with self._cond:
            left = self._running + list(self._waiting)
            self._running, self._batch = [], None
            self._waiting.clear()
        for seq in left:
            seq.end(UnavailableError("the generation engine was closed"))

    def _drop_ended(self) -> None:
        """Rows whose sequence ended or whose consumer left leave the batch."""
        keep = [row for row, seq in enumerate(self._running) if not (seq.done or seq.cancelled)]
        if len(keep) == len(self._running):
            return
        batch = self._batch.keep(keep) if keep and self._batch is not None else None
        with self._cond:
            self._running = [self._running[row] for row in keep]
            self._batch = batch

    def _admit(self, admitted: list[_Sequence]) -> None:
        """Prefill ``admitted`` together; those still going join the running batch."""
        if not admitted:
            return
        try:
            batch, logits = prefill(self._module, [seq.prompt for seq in admitted], self._device)
            tokens = self._emit(admitted, logits)
        except Exception as exc:  # the running batch is untouched: only these fail
            for seq in admitted:
                seq.end(exc)
            return
        keep = [row for row, seq in enumerate(admitted) if not (seq.done or seq.cancelled)]
        if not keep:
            return
        batch.pending = torch.tensor(tokens, device=self._device).unsqueeze(1)
        if len(keep) < len(admitted):
            batch = batch.keep(keep)
        merged = merge(self._batch, batch)
        with self._cond:
            self._running = self._running + [admitted[row] for row in keep]
            self._batch = merged

    def _decode(self) -> None:
        """One forward pass for every running row; on an error, all of them fail."""
        if not self._running or self._batch is None:
            return
        try:
            self._batch, logits = decode(self._module, self._batch)
            self._steps += 1
            tokens = self._emit(self._running, logits)
            self._batch.pending = torch.tensor(tokens, device=self._device).unsqueeze(1)
        except Exception as exc:  # the cache may be half-grown: the batch is lost
            for seq in self._running:
                seq.end(exc)

    def _emit(self, seqs: list[_Sequence], logits: torch.Tensor) -> list[int]:
        """Sample each row's next token and hand it to its consumer; mark those that end."""
        tokens = choose(logits, [seq.sampling for seq in seqs], [seq.generator for seq in seqs])
        for seq, token in zip(seqs, tokens, strict=True):
            if seq.cancelled:
                continue
            if token in self._eos:
                seq.end()
                continue
            seq.produced += 1
            seq.send(token)
            if seq.produced >= seq.sampling.max_tokens:
                seq.end()
        return tokens
