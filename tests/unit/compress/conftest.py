"""Shared fixtures: the Digits MLP is trained once per session (about a second), then compressed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from inhouse.compress import Standardize, accuracy, compress
from inhouse.compress.prune import classifier_finetune
from inhouse.config import CompressionSettings


@dataclass(frozen=True)
class Digits:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> Iterator[None]:
    """Keep training deterministic and polite on the shared 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def digits() -> Digits:
    """sklearn's 8x8 digits, 75/25 stratified split, float32 pixels (standardized in the model)."""
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    return Digits(
        torch.tensor(x_train, dtype=torch.float32),
        torch.tensor(y_train),
        torch.tensor(x_test, dtype=torch.float32),
        torch.tensor(y_test),
    )


def make_mlp(standardize: Standardize) -> nn.Sequential:
    """The spec's MLP: standardization, 64 -> 64 ReLU -> 64 ReLU -> 10."""
    return nn.Sequential(
        standardize,
        nn.Linear(64, 64),
        nn.ReLU(),
        nn.Linear(64, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


@pytest.fixture(scope="session")
def parent(digits: Digits) -> nn.Sequential:
    """The trained float32 parent (20 epochs of Adam 1e-3: ~97% test accuracy)."""
    torch.manual_seed(0)
    model = make_mlp(Standardize.fit(digits.x_train))
    classifier_finetune(digits.x_train, digits.y_train, epochs=20, lr=1e-3, seed=0)(model)
    model.eval()
    assert accuracy(model, digits.x_test, digits.y_test) >= 95.0
    return model


@pytest.fixture(scope="session")
def compressed(parent: nn.Sequential, digits: Digits) -> nn.Module:
    """The parent at the default settings: 90% pruned in 3 steps + 8 epochs each, int8."""
    return compress(parent, CompressionSettings(), train=(digits.x_train, digits.y_train))
