"""Pruning: exact global sparsity, whole rows when structured, masks folded in, zeros kept."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from inhouse.compress import (
    Int8Linear,
    compress,
    make_permanent,
    prune_global_unstructured,
    prune_model,
    prune_structured,
    sparsity,
)
from inhouse.compress.prune import classifier_finetune, cubic_schedule
from inhouse.config import CompressionSettings
from inhouse.errors import InvalidInputError


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [layer for layer in model.modules() if isinstance(layer, nn.Linear)]


def test_global_unstructured_reaches_the_amount_and_masks_become_permanent(
    parent: nn.Module,
) -> None:
    model = copy.deepcopy(parent)
    reached = prune_global_unstructured(model, 0.8)
    assert reached == pytest.approx(0.8, abs=1e-3)
    assert hasattr(_linears(model)[0], "weight_orig")
    # layers are pruned unevenly: the global threshold is shared
    per_layer = {float((layer.weight == 0).float().mean()) for layer in _linears(model)}
    assert len(per_layer) > 1
    make_permanent(model)
    for layer in _linears(model):
        assert not hasattr(layer, "weight_orig") and not hasattr(layer, "weight_mask")
        assert isinstance(layer.weight, nn.Parameter)
        assert not layer._forward_pre_hooks
    assert sparsity(model) == pytest.approx(0.8, abs=1e-3)


def test_repeated_pruning_counts_what_is_already_pruned(parent: nn.Module) -> None:
    model = copy.deepcopy(parent)
    for target in cubic_schedule(0.9, 3):
        assert prune_global_unstructured(model, target) == pytest.approx(target, abs=1e-3)
    assert cubic_schedule(0.9, 3)[-1] == pytest.approx(0.9)
    assert cubic_schedule(0.9, 3) == sorted(cubic_schedule(0.9, 3))


def test_structured_pruning_removes_whole_rows(parent: nn.Module) -> None:
    model = copy.deepcopy(parent)
    reached = prune_structured(model, 0.5)
    make_permanent(model)
    assert reached == pytest.approx(0.5)
    hidden, last = _linears(model)[:-1], _linears(model)[-1]
    for layer in hidden:
        row_zero = (layer.weight == 0).all(dim=1)
        assert int(row_zero.sum()) == layer.out_features // 2
        # every row is either entirely pruned or entirely kept
        assert bool(((layer.weight != 0).all(dim=1) | row_zero).all())
    assert int((last.weight == 0).sum()) == 0  # the output rows (classes) stay


def test_finetune_keeps_pruned_weights_at_zero(parent: nn.Module, digits: Any) -> None:
    model = copy.deepcopy(parent)
    settings = CompressionSettings(prune_amount=0.7, prune_steps=2, finetune_epochs=1)
    finetune = classifier_finetune(digits.x_train, digits.y_train, epochs=1)
    before = [layer.weight.detach().clone() for layer in _linears(model)]
    prune_model(model, settings, finetune=finetune)
    after = [layer.weight.detach() for layer in _linears(model)]
    assert sparsity(model) == pytest.approx(0.7, abs=1e-3)
    changed = any(not torch.equal(a[a != 0], b[a != 0]) for a, b in zip(after, before))
    assert changed  # fine-tuning moved the surviving weights


def test_structured_compression_round_trips_through_the_pipeline(
    parent: nn.Module, digits: Any
) -> None:
    settings = CompressionSettings(
        prune_amount=0.25, structured=True, prune_steps=1, finetune_epochs=2
    )
    compressed = compress(parent, settings, train=(digits.x_train, digits.y_train))
    first = compressed.get_submodule("1")
    assert isinstance(first, Int8Linear)
    assert int((first.qweight == 0).all(dim=1).sum()) == 16


def test_exclude_and_no_linear_are_handled(parent: nn.Module) -> None:
    model = copy.deepcopy(parent)
    prune_global_unstructured(model, 0.5, exclude=["5"])
    make_permanent(model)
    assert int(torch.count_nonzero(_linears(model)[-1].weight)) == 64 * 10
    with pytest.raises(InvalidInputError):
        prune_global_unstructured(nn.Sequential(nn.ReLU()), 0.5)
    with pytest.raises(InvalidInputError):
        prune_structured(nn.Sequential(nn.Linear(3, 2)), 0.5)
    with pytest.raises(InvalidInputError):
        compress(parent, finetune=lambda m: None, train=(torch.zeros(1, 64), torch.zeros(1)))


def test_finetune_stops_at_max_steps(parent: nn.Module, digits: Any) -> None:
    model = copy.deepcopy(parent)
    calls: list[int] = []
    model.register_forward_hook(lambda module, args, out: calls.append(int(args[0].shape[0])))
    classifier_finetune(digits.x_train, digits.y_train, epochs=8, batch_size=32, max_steps=7)(model)
    assert calls == [32] * 7  # not 8 epochs of ~45 batches
    calls.clear()
    rows = int(digits.x_train.shape[0])
    classifier_finetune(digits.x_train, digits.y_train, epochs=2, batch_size=32)(model)
    assert len(calls) == 2 * -(-rows // 32) and sum(calls) == 2 * rows  # no cap: every epoch


def test_tabular_compression_keeps_activations_float_unless_asked() -> None:
    from inhouse.kinds.tabular.compression import tabular_settings

    assert tabular_settings(CompressionSettings()).runtime == "weight_only"
    asked = CompressionSettings(runtime="dynamic")
    assert tabular_settings(asked) is asked
