"""One epoch of text fine-tuning over a worker's shard, and accuracy on held-out texts.

:func:`train_epoch` tokenises its batches as it goes (dynamic padding), runs mixed precision on
CUDA only and follows a linear warm-up and decay; the benchmarks drive it directly.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from inhouse.config import TextTrainOptions
from inhouse.data.text_import import TextRows


def shard(
    rows: TextRows, *, options: TextTrainOptions, epoch: int, rank: int, world: int
) -> list[int]:
    """This worker's row indices for ``epoch``: seeded subsample, shuffled, split by rank."""
    order = list(range(len(rows)))
    if options.train_limit is not None and options.train_limit < len(order):
        order = sorted(random.Random(options.seed).sample(order, options.train_limit))
    random.Random(options.seed * 1000 + epoch).shuffle(order)
    per_worker = len(order) // world  # equal step counts keep DDP's collectives in step
    return order[rank * per_worker : (rank + 1) * per_worker]


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU has it, else fp16; ``None`` (full precision) off CUDA."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def set_learning_rate(
    optimizer: torch.optim.Optimizer, options: TextTrainOptions, *, done: int, total: int
) -> None:
    """Linear warm-up over ``options.warmup`` of the ``total`` steps, then linear decay."""
    warm = max(1, int(total * options.warmup))
    factor = (done + 1) / warm if done < warm else max(0.0, (total - done) / (total - warm))
    for group in optimizer.param_groups:
        group["lr"] = options.learning_rate() * factor


def train_epoch(
    model: nn.Module,
    tokenizer: Any,
    rows: TextRows,
    optimizer: torch.optim.Optimizer,
    *,
    options: TextTrainOptions,
    epoch: int,
    rank: int = 0,
    world: int = 1,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """One epoch over this worker's shard; returns loss sum, correct and seen counts."""
    from inhouse.models.text import encode_texts

    device = device or torch.device("cpu")
    indices = shard(rows, options=options, epoch=epoch, rank=rank, world=world)
    steps = math.ceil(len(indices) / options.batch_size)
    dtype = autocast_dtype(device) if options.mixed_precision else None
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    total = steps * options.epochs
    for step in range(steps):
        set_learning_rate(optimizer, options, done=epoch * steps + step, total=total)
        batch = indices[step * options.batch_size : (step + 1) * options.batch_size]
        ids, mask = encode_texts(
            tokenizer, [rows.texts[i] for i in batch], max_length=options.max_length
        )
        labels = torch.tensor([rows.labels[i] for i in batch], device=device)
        ids, mask = ids.to(device), mask.to(device)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(ids, mask)
            loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        scaler.step(optimizer)
        scaler.update()
        loss_sum += float(loss.detach()) * len(batch)
        correct += int((logits.argmax(dim=-1) == labels).sum())
        seen += len(batch)
    return {
        "loss_sum": loss_sum,
        "correct": correct,
        "seen": seen,
        "amp": str(dtype).removeprefix("torch.") if dtype is not None else "off",
    }


@torch.inference_mode()
def evaluate_texts(
    model: nn.Module,
    tokenizer: Any,
    rows: TextRows,
    options: TextTrainOptions,
    *,
    limit: int | None = None,
    device: torch.device | None = None,
) -> float:
    """Accuracy on the first ``limit`` rows (all by default)."""
    from inhouse.models.text import encode_texts

    device = device or torch.device("cpu")
    n = len(rows) if limit is None else min(limit, len(rows))
    if n == 0:
        return float("nan")
    model.eval()
    correct = 0
    for start in range(0, n, 64):
        stop = min(start + 64, n)
        ids, mask = encode_texts(tokenizer, rows.texts[start:stop], max_length=options.max_length)
        logits = model(ids.to(device), mask.to(device))
        labels = torch.tensor(rows.labels[start:stop], device=device)
        correct += int((logits.argmax(dim=-1) == labels).sum())
    return correct / n
