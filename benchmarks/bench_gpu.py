"""Mixed precision on a GPU: the text fine-tuning step (``inhouse.kinds.text.epochs.train_epoch``,
what every Ray Train worker runs) in bf16 autocast vs fp32, same model, data and batches.

The model has all-MiniLM-L6-v2's shapes (6 layers, hidden 384, 12 heads, 30,522-token vocab)
with random weights, so no download and no weights package is needed; the texts are random
word sequences of 128 tokens with 77 random labels (throughput only, no accuracy). Returns no
rows without CUDA (this 2-core CI machine has none); run it where a GPU is:
``python -m inhouse.benchmarks.run --only gpu``.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from inhouse.benchmarks.report import row

NAME = "gpu"
VOCAB = 30_522
CLASSES = [f"intent_{i}" for i in range(77)]


def _minilm_shaped(directory: Path) -> Path:
    from transformers import AutoModel, BertConfig, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words += [f"w{i}" for i in range(VOCAB - len(words))]
    (directory / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab={t: i for i, t in enumerate(words)}).save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
    )
    AutoModel.from_config(config).save_pretrained(directory)
    return directory


def _rows(n: int) -> Any:
    from inhouse.data.text_import import TextRows

    rng = random.Random(0)
    texts = [" ".join(f"w{rng.randrange(VOCAB - 5)}" for _ in range(126)) for _ in range(n)]
    return TextRows(texts, [rng.randrange(len(CLASSES)) for _ in range(n)], list(range(n)))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _epoch_seconds(
    directory: Path, rows: Any, *, mixed: bool, repeats: int, device: torch.device
) -> list[float]:
    from inhouse.config import TextTrainOptions
    from inhouse.kinds.text.epochs import autocast_dtype, train_epoch
    from inhouse.models.hf import classifier_from_dir

    model, tokenizer, _ = classifier_from_dir(str(directory), class_names=CLASSES, max_length=128)
    model.to(device)
    options = TextTrainOptions(
        dataset="random", model="bench", model_dir=str(directory), epochs=repeats + 1,
        batch_size=256, max_length=128, mixed_precision=mixed,
    )  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    times = []
    for epoch in range(repeats + 1):  # the first epoch warms up kernels and the allocator
        _sync(device)
        started = time.perf_counter()
        stats = train_epoch(model, tokenizer, rows, optimizer, options=options, epoch=epoch,
                            device=device)  # fmt: skip
        _sync(device)
        if epoch:
            times.append(time.perf_counter() - started)
    dtype = autocast_dtype(device) if mixed else None
    expected = "off" if dtype is None else str(dtype).removeprefix("torch.")
    if stats["amp"] != expected:
        raise RuntimeError(f"the epoch ran {stats['amp']}, not {expected}")
    return times


def run(quick: bool) -> list[dict[str, Any]]:
    if not torch.cuda.is_available():
        return []
    rows = _rows(1024 if quick else 4096)
    repeats = 2 if quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        directory = _minilm_shaped(Path(tmp))
        cuda = torch.device("cuda")
        fp32 = _epoch_seconds(directory, rows, mixed=False, repeats=repeats, device=cuda)
        amp = _epoch_seconds(directory, rows, mixed=True, repeats=repeats, device=cuda)
    per_second = {"fp32": len(rows) / statistics.median(fp32)}
    per_second["amp"] = len(rows) / statistics.median(amp)
    device = torch.cuda.get_device_name(0)
    return [
        row(
            NAME,
            "text fine-tune throughput (texts/s), bf16 autocast vs fp32",
            per_second["amp"],
            per_second["fp32"],
            notes=f"MiniLM-shaped BERT, batch 256 x 128 tokens, median of {repeats} epochs of "
            f"{len(rows)} texts on {device}",
        )
    ]
