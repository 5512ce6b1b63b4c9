"""Compressed vs parent: size, parameters, latency, accuracy; and the gate that decides serving."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
from pydantic import BaseModel
from torch import nn

from inhouse.compress.artifact import dumps_compressed, float32_size
from inhouse.compress.layers import Int8Embedding, Int8Linear
from inhouse.config import GateSettings


class ModelStats(BaseModel):
    """Measurements of one model."""

    size_bytes: int
    parameters: int
    nonzero_parameters: int
    accuracy: float  # percent
    latency_ms: dict[str, float]  # "batch=1,threads=1" -> median milliseconds per batch


class CompressionReport(BaseModel):
    """A compressed model measured against its parent on the same test set."""

    parent: ModelStats
    compressed: ModelStats
    size_ratio: float
    accuracy_drop_points: float
    test_samples: int

    def to_dict(self) -> dict[str, object]:
        """The report as plain JSON-ready data."""
        return self.model_dump()

    def to_json(self) -> str:
        """The report as indented JSON."""
        return self.model_dump_json(indent=2)

    def to_markdown(self) -> str:
        """The report as a markdown table: one row per measure, parent | compressed | ratio."""
        p, c = self.parent, self.compressed
        rows = [
            (
                "size on disk (bytes)",
                f"{p.size_bytes:,}",
                f"{c.size_bytes:,}",
                f"{self.size_ratio:.1f}x smaller",
            ),
            ("parameters", f"{p.parameters:,}", f"{c.parameters:,}", ""),
            (
                "nonzero parameters",
                f"{p.nonzero_parameters:,}",
                f"{c.nonzero_parameters:,}",
                f"{_ratio(p.nonzero_parameters, c.nonzero_parameters):.1f}x fewer",
            ),
            (
                "test accuracy (%)",
                f"{p.accuracy:.2f}",
                f"{c.accuracy:.2f}",
                f"{-self.accuracy_drop_points:+.2f} points",
            ),
        ]
        for key, parent_ms in p.latency_ms.items():
            compressed_ms = c.latency_ms.get(key, float("nan"))
            rows.append(
                (
                    f"latency ms ({key})",
                    f"{parent_ms:.3f}",
                    f"{compressed_ms:.3f}",
                    f"{_ratio(parent_ms, compressed_ms):.2f}x speed-up",
                )
            )
        lines = ["| measure | parent | compressed | change |", "|---|---:|---:|---:|"]
        lines += [f"| {a} | {b} | {c_} | {d} |" for a, b, c_, d in rows]
        return "\n".join(lines) + "\n"


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """``(total, nonzero)`` logical weights: int8 layers count their int8 entries and bias."""
    total = nonzero = 0
    for layer in module.modules():
        tensors: list[torch.Tensor] = []
        if isinstance(layer, (Int8Linear, Int8Embedding)):
            tensors.append(layer.qweight)
            bias = getattr(layer, "bias", None)
            if isinstance(bias, torch.Tensor):
                tensors.append(bias)
        for name, parameter in layer.named_parameters(recurse=False):
            # a layer still under pruning computes weight = weight_orig * weight_mask
            tensors.append(getattr(layer, name[:-5]) if name.endswith("_orig") else parameter)
        for tensor in tensors:
            total += tensor.numel()
            nonzero += int(torch.count_nonzero(tensor.detach()))
    return total, nonzero


def _logits(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    out = model(inputs)
    return getattr(out, "logits", out)  # type: ignore[no-any-return]


@torch.inference_mode()
def accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Percent of ``inputs`` whose argmax logit is the label."""
    model.eval()
    predicted = _logits(model, inputs).argmax(dim=-1)
    return float((predicted == labels).float().mean()) * 100.0


@torch.inference_mode()
def latency_ms(
    model: nn.Module, inputs: torch.Tensor, *, threads: int, repeats: int = 50, warmup: int = 5
) -> float:
    """Median milliseconds of one forward pass of the batch ``inputs`` on ``threads`` threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model.eval()
        for _ in range(warmup):
            model(inputs)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(inputs)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return statistics.median(times) * 1000.0


def _batch(inputs: torch.Tensor, size: int) -> torch.Tensor:
    repeat = -(-size // inputs.shape[0])
    return inputs.repeat(repeat, *([1] * (inputs.dim() - 1)))[:size]


def _stats(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    size: int,
    batch_sizes: Sequence[int],
    threads: Sequence[int],
    repeats: int,
) -> ModelStats:
    total, nonzero = count_parameters(model)
    latency = {
        f"batch={b},threads={t}": latency_ms(model, _batch(inputs, b), threads=t, repeats=repeats)
        for t in threads
        for b in batch_sizes
    }
    return ModelStats(
        size_bytes=size,
        parameters=total,
        nonzero_parameters=nonzero,
        accuracy=accuracy(model, inputs, labels),
        latency_ms=latency,
    )


def compare(
    parent: nn.Module,
    compressed: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    parent_size_bytes: int | None = None,
    compressed_size_bytes: int | None = None,
    batch_sizes: Sequence[int] = (1, 32),
    threads: Sequence[int] = (1, 2),
    repeats: int = 50,
) -> CompressionReport:
    """Measure ``compressed`` against ``parent`` on the test set ``(inputs, labels)``.

    Sizes default to the parent's float32 safetensors and the compressed artifact's bytes.
    """
    if parent_size_bytes is None:
        parent_size_bytes = float32_size(parent)
    if compressed_size_bytes is None:
        compressed_size_bytes = len(dumps_compressed(compressed))
    args = (inputs, labels)
    parent_stats = _stats(parent, *args, parent_size_bytes, batch_sizes, threads, repeats)
    stats = _stats(compressed, *args, compressed_size_bytes, batch_sizes, threads, repeats)
    return CompressionReport(
        parent=parent_stats,
        compressed=stats,
        size_ratio=_ratio(parent_size_bytes, compressed_size_bytes),
        accuracy_drop_points=parent_stats.accuracy - stats.accuracy,
        test_samples=int(labels.shape[0]),
    )


def gate(report: CompressionReport, settings: GateSettings | None = None) -> tuple[bool, list[str]]:
    """Whether the compressed model may be served, and why not (one reason per failed limit)."""
    settings = settings or GateSettings()
    reasons: list[str] = []
    drop = report.accuracy_drop_points
    if not drop <= settings.max_accuracy_drop_points:  # also catches NaN
        reasons.append(
            f"accuracy drops {drop:.2f} points, more than {settings.max_accuracy_drop_points}"
        )
    if settings.min_size_ratio is not None and not report.size_ratio >= settings.min_size_ratio:
        reasons.append(
            f"only {report.size_ratio:.2f}x smaller, less than {settings.min_size_ratio}x"
        )
    if settings.max_latency_ratio is not None:
        key = "batch=1,threads=1"
        parent_ms = report.parent.latency_ms.get(key)
        compressed_ms = report.compressed.latency_ms.get(key)
        if parent_ms is None or compressed_ms is None:
            reasons.append(f"no latency measured at {key}")
        elif not compressed_ms / parent_ms <= settings.max_latency_ratio:
            reasons.append(
                f"latency at {key} is {compressed_ms / parent_ms:.2f}x the parent's, "
                f"more than {settings.max_latency_ratio}x"
            )
    return not reasons, reasons
