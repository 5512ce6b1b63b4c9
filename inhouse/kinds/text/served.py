"""A text version in the form it is served: loaded, adapters merged and quantized to int8.

The text kind's serving (the replica and the explainer sidecar) and the coordinator (which
measures a candidate before its canary) all load versions through :func:`load_served`, so
what is measured is what answers requests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from inhouse.compress import Int8Embedding, Int8Linear, quantize_linears
from inhouse.errors import InvalidInputError
from inhouse.kinds.text.versions import load_text
from inhouse.models.text import encode_texts
from inhouse.registry import ModelVersion, Registry


@dataclass(frozen=True)
class Served:
    """One runnable text model: module, tokenizer, spec, and which version it is."""

    module: nn.Module
    tokenizer: Any
    spec: dict[str, Any]
    model: str
    version: int
    precision: str

    @torch.inference_mode()
    def probabilities(self, texts: list[str]) -> np.ndarray:
        ids, mask = encode_texts(self.tokenizer, texts, max_length=int(self.spec["max_length"]))
        return torch.softmax(self.module(ids, mask).float(), dim=-1).numpy()

    def accuracy(self, texts: list[str], labels: list[int], *, batch: int = 64) -> float:
        """Share of ``texts`` whose most probable class is the label (NaN for none)."""
        if not texts:
            return float("nan")
        hits = 0
        for start in range(0, len(texts), batch):
            predicted = self.probabilities(texts[start : start + batch]).argmax(axis=1)
            hits += int((predicted == np.asarray(labels[start : start + batch])).sum())
        return hits / len(texts)

    def latency_ms(self, text: str, *, repeats: int = 20) -> float:
        """Median milliseconds to score one text (after one warm-up call)."""
        self.probabilities([text])
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            self.probabilities([text])
            times.append((time.perf_counter() - started) * 1000.0)
        return float(np.median(times))


def _int8(module: nn.Module) -> bool:
    return any(isinstance(m, (Int8Linear, Int8Embedding)) for m in module.modules())


def load_served(registry: Registry, info: ModelVersion, *, quantize: bool) -> Served:
    """Load a text version; a float adapter merge is quantized to int8 when ``quantize``."""
    module, tokenizer, spec = load_text(registry, info)
    if spec.get("role") == "encoder":
        raise InvalidInputError(f"{info.model} v{info.version} is an encoder without a head")
    if quantize and not _int8(module):
        quantize_linears(module)
    precision = "int8" if _int8(module) else "fp32"
    return Served(module.eval(), tokenizer, spec, info.model, info.version, precision)


def load_as_served(registry: Registry, info: ModelVersion) -> Served:
    """``info`` as a text replica serves it: adapters are merged and quantized to int8."""
    return load_served(registry, info, quantize=info.spec.get("role") == "adapter")
