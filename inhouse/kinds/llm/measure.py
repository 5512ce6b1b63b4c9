"""A causal LM measured for compression: held-out perplexity, decode speed, and the gate.

The held-out text ships with inhouse (``heldout.txt``, next to this file): the prose of the
project's own documentation (README.md and docs/*.md, code blocks and tables left out), under
the project's licence, Apache-2.0. No model was trained on it here and it is never used to
calibrate the int8 copy, so it is held out for every model inhouse compresses.
"""

from __future__ import annotations

import math
import time
from importlib import resources
from typing import Any

import torch
from pydantic import BaseModel
from torch import nn

from inhouse.config import GateSettings

HELDOUT_FILE = "heldout.txt"
HELDOUT_LICENCE = "Apache-2.0 (inhouse's own documentation: README.md and docs/*.md prose)"


def heldout_text() -> str:
    """The held-out text shipped in this package."""
    return resources.files("inhouse.kinds.llm").joinpath(HELDOUT_FILE).read_text("utf-8")


@torch.inference_mode()
def perplexity(module: nn.Module, ids: list[int], *, window: int) -> float:
    """exp(mean next-token negative log-likelihood) of ``ids``, read in windows of ``window``
    tokens (each window starts afresh: no context crosses a boundary)."""
    if len(ids) < 2:
        raise ValueError("perplexity needs at least two tokens")
    total, count = 0.0, 0
    for start in range(0, len(ids), window):
        chunk = torch.tensor([ids[start : start + window]])
        if chunk.shape[1] < 2:
            break
        logits = module(input_ids=chunk).logits[0, :-1].float()
        loss = torch.nn.functional.cross_entropy(logits, chunk[0, 1:], reduction="sum")
        total += float(loss)
        count += chunk.shape[1] - 1
    return math.exp(total / count)


@torch.inference_mode()
def decode_tokens_per_s(
    module: Any, prompt: list[int], *, new_tokens: int = 32, repeats: int = 3
) -> float:
    """Tokens per second of greedy decoding with a KV cache (``generate``), prefill excluded:
    the time of ``new_tokens`` tokens minus that of the first one, best of ``repeats`` runs."""
    ids = torch.tensor([prompt])
    mask = torch.ones_like(ids)

    def seconds(n: int) -> float:
        start = time.perf_counter()
        module.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
        )
        return time.perf_counter() - start

    seconds(2)  # warm-up
    rates = []
    for _ in range(repeats):
        first = seconds(1)  # prefill + the first token
        rates.append((new_tokens - 1) / max(seconds(new_tokens) - first, 1e-9))
    return max(rates)  # the least disturbed run on a shared machine


class LLMStats(BaseModel):
    """One model's figures."""

    size_bytes: int
    perplexity: float
    decode_tokens_per_s: float


class LLMCompressionReport(BaseModel):
    """An int8 copy measured against its float parent on the same held-out text."""

    parent: LLMStats
    compressed: LLMStats
    size_ratio: float
    perplexity_increase: float  # compressed / parent - 1
    speedup: float  # compressed / parent decode tokens/s
    heldout_tokens: int
    window: int
    threads: int

    def to_markdown(self) -> str:
        """A markdown table: one row per measure, parent | compressed | change."""
        p, c = self.parent, self.compressed
        rows = [
            ("size stored (bytes)", f"{p.size_bytes:,}", f"{c.size_bytes:,}",
             f"{self.size_ratio:.2f}x smaller"),
            ("decode tokens/s (greedy, KV cache)", f"{p.decode_tokens_per_s:.2f}",
             f"{c.decode_tokens_per_s:.2f}", f"{self.speedup:.2f}x"),
            ("held-out perplexity", f"{p.perplexity:.3f}", f"{c.perplexity:.3f}",
             f"{100 * self.perplexity_increase:+.2f}%"),
        ]  # fmt: skip
        lines = ["| measure | parent (float32) | int8 | change |", "|---|---:|---:|---:|"]
        lines += [f"| {a} | {b} | {c_} | {d} |" for a, b, c_, d in rows]
        lines += [
            "",
            f"- held-out text: {self.heldout_tokens} tokens in windows of {self.window}; "
            f"licence {HELDOUT_LICENCE}",
            f"- decode measured on {self.threads} CPU thread(s)",
        ]
        return "\n".join(lines) + "\n"


def measure(
    module: Any, *, size_bytes: int, ids: list[int], window: int, prompt: list[int],
    new_tokens: int,
) -> LLMStats:  # fmt: skip
    """Size, held-out perplexity and decode speed of one model."""
    return LLMStats(
        size_bytes=size_bytes,
        perplexity=perplexity(module, ids, window=window),
        decode_tokens_per_s=decode_tokens_per_s(module, prompt, new_tokens=new_tokens),
    )


def report(
    parent: LLMStats, compressed: LLMStats, *, heldout_tokens: int, window: int
) -> LLMCompressionReport:
    """The report of ``compressed`` against ``parent``."""
    return LLMCompressionReport(
        parent=parent,
        compressed=compressed,
        size_ratio=parent.size_bytes / compressed.size_bytes,
        perplexity_increase=compressed.perplexity / parent.perplexity - 1.0,
        speedup=compressed.decode_tokens_per_s / parent.decode_tokens_per_s,
        heldout_tokens=heldout_tokens,
        window=window,
        threads=torch.get_num_threads(),
    )


def gate(result: LLMCompressionReport, settings: GateSettings) -> tuple[bool, list[str]]:
    """Whether the int8 copy may serve, and why not (one reason per failed limit)."""
    reasons: list[str] = []
    increase, limit = result.perplexity_increase, settings.max_perplexity_increase
    if not increase <= limit:  # also catches NaN
        reasons.append(
            f"held-out perplexity rises {100 * increase:+.2f}%, more than {100 * limit:+.2f}%"
        )
    if settings.min_size_ratio is not None and not result.size_ratio >= settings.min_size_ratio:
        reasons.append(
            f"only {result.size_ratio:.2f}x smaller, less than {settings.min_size_ratio}x"
        )
    if settings.max_latency_ratio is not None:
        ratio = 1.0 / result.speedup if result.speedup > 0 else math.inf
        if not ratio <= settings.max_latency_ratio:
            reasons.append(
                f"decode time per token is {ratio:.2f}x the parent's, "
                f"more than {settings.max_latency_ratio}x"
            )
    return not reasons, reasons
