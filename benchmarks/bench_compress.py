"""Compression (90% prune + int8, the default CompressionSettings) vs the fp32 parent.

Digits MLP: stored bytes of the compressed artifact vs the parent's fp32 safetensors,
test accuracy, and latency at batch 1/32 on 1/2 threads, all from ``inhouse.compress.compare``.
MNIST (when ``inhouse data seed mnist`` can seed it): the seed's MLP (784-64-64-10, pixels
scaled to [0, 1], Adam 1e-3, batch 32, 5 epochs; 1 with --quick) compressed as the tabular job
does (default settings, ``tabular_settings``): stored bytes and test accuracy vs the float model.
If transformers is installed, a 6-layer random BERT classifier (hidden 384, 12 heads,
intermediate 1536, vocab 30522) quantized to int8 with its embeddings: size and latency at
batch 1 and 32 on 1 thread vs fp32. Random weights are enough: size and speed do not depend
on the values, and no download is needed.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from inhouse.benchmarks.common import digits_data, torch_threads, train_digits
from inhouse.benchmarks.report import row

NAME = "compress"
BERT_SEQ = 64


def _digits_rows(quick: bool) -> list[dict[str, Any]]:
    from inhouse.compress import compare, compress
    from inhouse.compress.report import accuracy
    from inhouse.config import CompressionSettings

    with tempfile.TemporaryDirectory(prefix="inhouse-bench-compress-") as tmp:
        train, test = digits_data(Path(tmp))
    model, _spec = train_digits(train.x, train.y, epochs=30)
    started = time.perf_counter()
    compressed = compress(model, CompressionSettings(), train=(train.x, train.y))
    seconds = time.perf_counter() - started
    report = compare(model, compressed, test.x, test.y, repeats=20 if quick else 50)
    parent, small = report.parent, report.compressed
    rows = [
        row(NAME, "digits stored bytes (int8 + 90% sparse vs fp32)", small.size_bytes,
            parent.size_bytes, target=("ratio", "<=", 0.1, ""),
            notes=f"{report.size_ratio:.1f}x smaller; compress() took {seconds:.1f} s"),
        row(NAME, "digits test accuracy %", small.accuracy, parent.accuracy,
            target=("delta", ">=", -0.5, "points"),
            notes=f"drop {report.accuracy_drop_points:+.2f} points on {report.test_samples} "
                  f"test rows; parent >= 95: {accuracy(model, test.x, test.y) >= 95.0}"),
    ]
    for key, parent_ms in parent.latency_ms.items():
        rows.append(row(NAME, f"digits latency ms ({key})", small.latency_ms[key], parent_ms,
                        notes="median of one forward pass of the batch"))
    return rows


def _mnist_rows(quick: bool) -> list[dict[str, Any]]:
    from torch.utils.data import DataLoader, TensorDataset

    from inhouse.compress import compare, compress
    from inhouse.config import CompressionSettings
    from inhouse.data import read_rows, seed
    from inhouse.errors import InhouseError
    from inhouse.kinds import build_model
    from inhouse.kinds.tabular.compression import tabular_settings
    from inhouse.models import MLPSpec
    from inhouse.schema import get_engine
    from inhouse.training import train_one_epoch

    with tempfile.TemporaryDirectory(prefix="inhouse-bench-compress-") as tmp:
        engine = get_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            seed(engine, "mnist")
        except InhouseError as exc:
            return [row(NAME, "mnist compression (skipped)", 0.0, None, notes=exc.message)]
        train = read_rows(engine, "mnist", split="train")
        test = read_rows(engine, "mnist", split="test")
    torch.manual_seed(0)
    model = build_model(MLPSpec(input_dim=784, hidden=[64, 64], num_classes=10).model_dump())
    model[0].std.fill_(255.0)  # type: ignore[index,union-attr]  # pixels to [0, 1], as training
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(train.x, train.y), batch_size=32, shuffle=True)
    for _ in range(1 if quick else 5):
        train_one_epoch(model, loader, optimizer)
    model.eval()
    settings = tabular_settings(CompressionSettings())
    started = time.perf_counter()
    compressed = compress(model, settings, train=(train.x, train.y))
    seconds = time.perf_counter() - started
    report = compare(model, compressed, test.x, test.y, repeats=20 if quick else 50)
    parent, small = report.parent, report.compressed
    return [
        row(NAME, "mnist stored bytes (int8 + 90% sparse vs fp32)", small.size_bytes,
            parent.size_bytes, target=("ratio", "<=", 0.1, ""),
            notes=f"{report.size_ratio:.1f}x smaller; compress() took {seconds:.1f} s "
                  f"on {len(train.y):,} rows ({settings.finetune_max_steps} fine-tune steps "
                  f"x {settings.prune_steps})"),
        row(NAME, "mnist test accuracy %", small.accuracy, parent.accuracy,
            target=("delta", ">=", -0.5, "points"),
            notes=f"drop {report.accuracy_drop_points:+.2f} points on {report.test_samples:,} "
                  "test rows; the seed's MLP"),
    ]


def _bert_rows(quick: bool) -> list[dict[str, Any]]:
    from transformers import BertConfig, BertForSequenceClassification

    from inhouse.compress import compress, dumps_compressed, float32_size, latency_ms
    from inhouse.config import CompressionSettings

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                        num_attention_heads=12, intermediate_size=1536, num_labels=2)
    bert = BertForSequenceClassification(config).eval()
    int8 = compress(bert, CompressionSettings(prune_amount=0.0, quantize_embeddings=True))
    fp32_bytes, int8_bytes = float32_size(bert), len(dumps_compressed(int8))
    ids = torch.randint(1000, 30000, (32, BERT_SEQ), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        drift = float((bert(ids[:4]).logits - int8(ids[:4]).logits).abs().max())
    rows = [
        row(NAME, "bert-6L int8 stored bytes vs fp32", int8_bytes, fp32_bytes,
            target=("ratio", "<=", 0.3, ""),
            notes=f"{fp32_bytes / int8_bytes:.2f}x smaller (embeddings int8 too); "
                  f"max |logit drift| {drift:.3f}"),
    ]
    with torch_threads(1):
        for batch, repeats in ((1, 10 if quick else 20), (32, 2 if quick else 3)):
            x = ids[:batch]
            fp32_ms = latency_ms(bert, x, threads=1, repeats=repeats, warmup=1)
            int8_ms = latency_ms(int8, x, threads=1, repeats=repeats, warmup=1)
            rows.append(row(NAME, f"bert-6L latency ms (batch={batch},seq={BERT_SEQ},threads=1)",
                            int8_ms, fp32_ms, notes=f"{fp32_ms / int8_ms:.2f}x speed-up; "
                            f"median of {repeats}"))
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    """Digits MLP rows, MNIST rows, then BERT rows when transformers is importable."""
    rows = _digits_rows(quick) + _mnist_rows(quick)
    if importlib.util.find_spec("transformers") is not None:
        rows += _bert_rows(quick)
    else:
        rows.append(row(NAME, "bert-6L (skipped)", 0.0, None,
                        notes="transformers is not installed"))
    return rows
