"""The framework-free training step: one epoch, evaluation. Ray Train and plain
``torch.distributed`` both drive exactly this code, so the benchmark compares like with like."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader


@dataclass(frozen=True)
class EpochStats:
    loss: float
    accuracy: float
    samples: int


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader[tuple[torch.Tensor, ...]],
    optimizer: torch.optim.Optimizer,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], Any] | None = None,
    before_step: Callable[[], None] | None = None,
) -> EpochStats:
    """One pass over ``loader`` with cross-entropy; returns this worker's mean loss and accuracy.

    ``loss_fn``: the cross-entropy to use (DP ghost clipping brings its own); ``before_step``
    runs before each optimizer step (a learning-rate schedule).
    """
    model.train()
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    total_loss, correct, seen = 0.0, 0, 0
    device = next(model.parameters()).device
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = loss_fn(logits, y)
        loss.backward()
        if before_step is not None:
            before_step()
        optimizer.step()
        if len(y):  # Poisson sampling (DP) can draw an empty batch; it still takes its step
            total_loss += float(loss.detach()) * len(y)
        correct += int((logits.argmax(dim=1) == y).sum())
        seen += len(y)
    return EpochStats(loss=total_loss / max(seen, 1), accuracy=correct / max(seen, 1), samples=seen)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> EpochStats:
    """Loss and accuracy of ``model`` on a held-out set."""
    model.eval()
    device = next(model.parameters()).device
    logits = model(x.to(device))
    loss = nn.functional.cross_entropy(logits, y.to(device))
    accuracy = (logits.argmax(dim=1).cpu() == y).float().mean()
    return EpochStats(loss=float(loss), accuracy=float(accuracy), samples=len(y))
