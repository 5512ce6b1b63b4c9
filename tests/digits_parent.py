"""The spec's digits MLP trained in-process (Adam 3e-3, 10 epochs, batch 32), for tests that
need a real parent model to register, compress or serve."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from sqlalchemy import Engine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from inhouse.data import describe, read_rows
from inhouse.models import MLPSpec, Standardize, build_mlp
from inhouse.training import evaluate, train_one_epoch


@dataclass(frozen=True)
class Parent:
    module: nn.Module
    spec: dict[str, Any]
    lineage: dict[str, Any]
    test_accuracy: float


def train_parent(engine: Engine) -> Parent:
    """Train on the seeded ``digits`` data set of ``engine``; lineage names its row range."""
    info = describe(engine, "digits")
    train = read_rows(engine, "digits", split="train", up_to_id=info.last_id)
    test = read_rows(engine, "digits", split="test", up_to_id=info.last_id)
    mlp = MLPSpec(
        input_dim=info.n_features,
        num_classes=len(info.class_names),
        feature_names=info.feature_names,
        class_names=info.class_names,
    )
    spec = mlp.model_dump()
    torch.manual_seed(0)
    model = build_mlp(mlp)
    standardize = model[0]
    assert isinstance(standardize, Standardize)
    standardize.fit(train.x)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loader = DataLoader(
        TensorDataset(train.x, train.y),
        batch_size=32,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    for _ in range(10):
        train_one_epoch(model, loader, optimizer)
    accuracy = evaluate(model, test.x, test.y).accuracy
    lineage = {
        "dataset": "digits",
        "rows": {"first_id": info.first_id, "up_to_id": info.last_id},
        "parent": None,
    }
    return Parent(model.eval(), spec, lineage, accuracy)
