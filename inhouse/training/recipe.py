"""A run's initial weights, optimiser and learning-rate schedule.

Adam at a constant rate is the seed's recipe; DP-SGD on many rows does better with SGD and
Nesterov momentum on a cosine schedule (docs/privacy.md). The schedule is a function of the
global step (``epoch * steps_per_epoch + step``), so a run resumed from a checkpoint continues
on the same curve without saving any scheduler state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from inhouse.config.training import InitName, OptimizerName, ScheduleName


def initialise(model: torch.nn.Module, init: InitName) -> None:
    """``glorot``: every Linear layer Glorot-uniform with zero biases (Keras's default, which
    the seed's MNIST example relies on: PyTorch's default start loses ~0.3 points there)."""
    if init != "glorot":
        return
    for layer in model.modules():
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                torch.nn.init.zeros_(layer.bias)


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    *,
    name: OptimizerName,
    lr: float,
    momentum: float,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """Adam, or SGD (Nesterov when ``momentum`` > 0), with L2 ``weight_decay``.

    Under DP the decay applies to the noised gradient's step (post-processing, no privacy
    cost); it keeps the noise from random-walking weights the data never pulls back."""
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay
        )
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


class LearningRateSchedule:
    """Sets the rate of every step: constant, or cosine from ``lr`` down to 0 over the run.

    Call :meth:`start_epoch` before each epoch and the instance itself before each step.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        name: ScheduleName,
        lr: float,
        steps_per_epoch: int,
        epochs: int,
    ) -> None:
        self._optimizer, self._name, self._lr = optimizer, name, lr
        self._steps_per_epoch = max(1, steps_per_epoch)
        self._total = self._steps_per_epoch * max(1, epochs)
        self._step = 0

    def start_epoch(self, epoch: int) -> None:
        self._step = epoch * self._steps_per_epoch

    def rate(self, step: int) -> float:
        if self._name == "constant":
            return self._lr
        return self._lr * 0.5 * (1 + math.cos(math.pi * min(step, self._total) / self._total))

    def __call__(self) -> None:
        lr = self.rate(self._step)
        for group in self._optimizer.param_groups:
            group["lr"] = lr
        self._step += 1
