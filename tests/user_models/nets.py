"""A user's small modules (a residual net on float features; a broken builder) and the weights
file a user brings, trained outside inhouse."""

from __future__ import annotations

from pathlib import Path

import torch
from sqlalchemy import Engine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class ResidualNet(nn.Module):
    """``Linear → ReLU → (x + block(x)) → Linear``: not an ``nn.Sequential`` of the MLP's."""

    def __init__(self, inputs: int, width: int, classes: int) -> None:
        super().__init__()
        self.stem = nn.Linear(inputs, width)
        self.block = nn.Sequential(nn.Linear(width, width), nn.ReLU())
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        return self.head(h + self.block(h))


def residual(inputs: int, width: int = 16, classes: int = 3) -> nn.Module:
    """The builder ``tests.user_models.nets:residual``."""
    return ResidualNet(inputs, width, classes)


def not_a_module(inputs: int) -> object:
    """A builder that returns something else than a module."""
    return {"inputs": inputs}


def write_trained_weights(engine: Engine, dataset: str, path: Path, *, width: int = 16) -> Path:
    """Train ``residual`` on ``dataset``'s raw features (as a user would, elsewhere) and save its
    state dict as safetensors at ``path``."""
    from safetensors.torch import save_file

    from inhouse.data import describe, read_rows
    from inhouse.training import train_one_epoch

    info = describe(engine, dataset)
    train = read_rows(engine, dataset, split="train")
    torch.manual_seed(0)
    net = residual(info.n_features, width, len(info.class_names))
    loader = DataLoader(
        TensorDataset(train.x, train.y),
        batch_size=32,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(3):
        train_one_epoch(net, loader, optimizer)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path
