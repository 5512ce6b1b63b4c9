"""A range of a data set's rows as tensors (what every reader returns)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the metadata readers do not need torch
    import torch


@dataclass(frozen=True)
class Rows:
    """A row range as tensors: ``x`` float32 (n, features), ``y`` int64 (n,), ``ids`` int64
    (the rows' stream positions, ``seq``: the values watermarks and row windows count in)."""

    x: torch.Tensor
    y: torch.Tensor
    ids: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])
