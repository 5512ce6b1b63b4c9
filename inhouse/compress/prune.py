"""Magnitude pruning of Linear layers through ``torch.nn.utils.prune``.

Two shapes of sparsity:

- global unstructured: the smallest-magnitude weights of *all* Linear layers together, so
  layers that matter less give up more;
- structured: whole output rows (neurons / channels) of each layer, ranked by their L-n norm.
  The last Linear layer is left whole, since its rows are the model's outputs (classes).

Pruning runs in steps on a cubic schedule (Zhu & Gupta 2017), each followed by a fine-tune
while the masks hold the pruned weights at zero; :func:`make_permanent` then folds the masks
into the weights (no ``weight_orig`` / ``weight_mask`` left).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from inhouse.config import CompressionSettings
from inhouse.errors import InvalidInputError

FineTune = Callable[[nn.Module], None]


def prunable_linears(module: nn.Module, exclude: Iterable[str] = ()) -> list[tuple[str, nn.Linear]]:
    """The ``(name, layer)`` of every ``nn.Linear`` in ``module`` not named in ``exclude``."""
    skip = set(exclude)
    return [
        (name, layer)
        for name, layer in module.named_modules()
        if isinstance(layer, nn.Linear) and name not in skip
    ]


def _pruned_count(layers: list[tuple[str, nn.Linear]]) -> int:
    return sum(int((layer.weight == 0).sum()) for _, layer in layers)


def prune_global_unstructured(
    module: nn.Module, amount: float, *, exclude: Iterable[str] = ()
) -> float:
    """Zero the smallest weights so that ``amount`` of all Linear weights are pruned in total.

    Weights already pruned count towards ``amount``. Returns the reached sparsity.
    """
    layers = prunable_linears(module, exclude)
    if not layers:
        raise InvalidInputError("the model has no nn.Linear layer to prune")
    total = sum(layer.weight.numel() for _, layer in layers)
    more = round(amount * total) - _pruned_count(layers)
    if more > 0:
        prune.global_unstructured(
            [(layer, "weight") for _, layer in layers],
            pruning_method=prune.L1Unstructured,
            amount=more,
        )
    return _pruned_count(layers) / total


def prune_structured(
    module: nn.Module, amount: float, *, n: int = 2, exclude: Iterable[str] = ()
) -> float:
    """Zero ``amount`` of the output rows of each Linear layer (the last one excepted).

    Rows are ranked by their L-``n`` norm within each layer. Returns the reached row sparsity.
    """
    layers = prunable_linears(module, exclude)
    last = [name for name, layer in module.named_modules() if isinstance(layer, nn.Linear)][-1:]
    layers = [(name, layer) for name, layer in layers if name not in last]
    if not layers:
        raise InvalidInputError("the model has no hidden nn.Linear layer to prune by rows")
    rows_total, rows_pruned = 0, 0
    for _, layer in layers:
        rows = layer.out_features
        dead = int((layer.weight.abs().sum(dim=1) == 0).sum())
        more = round(amount * rows) - dead
        if more > 0:
            prune.ln_structured(  # type: ignore[no-untyped-call]
                layer, "weight", amount=more, n=n, dim=0
            )
        rows_total += rows
        rows_pruned += int((layer.weight.abs().sum(dim=1) == 0).sum())
    return rows_pruned / rows_total


def make_permanent(module: nn.Module) -> nn.Module:
    """Fold every pruning mask into its weight and drop the reparametrization hooks."""
    for layer in module.modules():
        for hook in list(layer._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(layer, hook._tensor_name)  # type: ignore[no-untyped-call]
    return module


def sparsity(module: nn.Module, exclude: Iterable[str] = ()) -> float:
    """Fraction of zero weights over the Linear layers of ``module``."""
    layers = prunable_linears(module, exclude)
    total = sum(layer.weight.numel() for _, layer in layers)
    return _pruned_count(layers) / total if total else 0.0


def cubic_schedule(final: float, steps: int) -> list[float]:
    """Cumulative sparsity after each step: fast early, gentle near ``final``."""
    return [final * (1.0 - (1.0 - k / steps) ** 3) for k in range(1, steps + 1)]


def classifier_finetune(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    max_steps: int | None = None,
) -> FineTune:
    """A fine-tune callable: Adam on cross-entropy over ``(inputs, targets)`` for ``epochs``,
    stopping after ``max_steps`` optimizer steps (``None``: no cap) wherever that falls."""

    def finetune(model: nn.Module) -> None:
        generator = torch.Generator().manual_seed(seed)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=lr)
        was_training = model.training
        model.train()
        steps = 0
        for _ in range(epochs):
            order = torch.randperm(inputs.shape[0], generator=generator)
            for start in range(0, inputs.shape[0], batch_size):
                if max_steps is not None and steps >= max_steps:
                    break
                steps += 1
                index = order[start : start + batch_size]
                out = model(inputs[index])
                logits = getattr(out, "logits", out)
                loss = F.cross_entropy(logits, targets[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
        model.train(was_training)

    return finetune


def prune_model(
    module: nn.Module, settings: CompressionSettings, *, finetune: FineTune | None = None
) -> float:
    """Prune ``module`` in place as ``settings`` say, fine-tuning after each step.

    The masks are made permanent at the end.

    Returns the reached sparsity (of weights, or of rows when structured).
    """
    reached = 0.0
    for target in cubic_schedule(settings.prune_amount, settings.prune_steps):
        if settings.structured:
            reached = prune_structured(
                module, target, n=settings.structured_norm, exclude=settings.exclude
            )
        else:
            reached = prune_global_unstructured(module, target, exclude=settings.exclude)
        if finetune is not None:
            finetune(module)
    make_permanent(module)
    return reached
