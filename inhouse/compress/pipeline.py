"""One call from a trained model to its compressed, ready-to-serve copy."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from inhouse.compress.prune import FineTune, classifier_finetune, prune_model
from inhouse.compress.quantize import quantize_model
from inhouse.config import CompressionSettings
from inhouse.errors import InvalidInputError


def compress(
    model: nn.Module,
    settings: CompressionSettings | None = None,
    *,
    finetune: FineTune | None = None,
    train: tuple[torch.Tensor, torch.Tensor] | None = None,
    calibration: Sequence[Any] | None = None,
) -> nn.Module:
    """Prune, fine-tune and quantize a copy of ``model`` (which is left untouched).

    Args:
        model: the trained float model.
        settings: what to do; the defaults reach the Digits and MNIST targets.
        finetune: called with the model after each pruning step (masks hold pruned weights at
            zero while it trains), e.g. a Ray Train loop or a BERT trainer.
        train: ``(inputs, labels)`` for the built-in classifier fine-tune (Adam, cross-entropy,
            ``settings.finetune_epochs`` epochs, ``settings.finetune_max_steps`` steps at
            most); used when ``finetune`` is not given.
        calibration: a few batches of training inputs (each a tensor or a tuple of the
            model's positional arguments): the int8 layers' inputs are smoothed where that
            helps (``settings.smooth_alphas``); without them no activation statistics are used.

    Returns:
        The compressed module in eval mode; save it with ``save_compressed``.
    """
    settings = settings or CompressionSettings()
    if finetune is not None and train is not None:
        raise InvalidInputError("pass either finetune= or train=, not both")
    if finetune is None and train is not None and settings.finetune_epochs > 0:
        inputs, labels = train
        finetune = classifier_finetune(
            inputs,
            labels,
            epochs=settings.finetune_epochs,
            lr=settings.lr,
            batch_size=settings.batch_size,
            seed=settings.seed,
            max_steps=settings.finetune_max_steps,
        )
    compressed = copy.deepcopy(model)
    if settings.prune_amount > 0:
        prune_model(compressed, settings, finetune=finetune)
    compressed.eval()
    with torch.no_grad():
        quantize_model(compressed, settings, calibration=calibration)
    for parameter in compressed.parameters():
        parameter.requires_grad_(False)
    return compressed
