"""Sharded reads for non-DP DDP training: each worker reads only its part of the rows.

Worker ``rank`` of ``world`` reads the rows with ``id % world == rank``
(:func:`inhouse.data.read_rows` ``shard=``). Two things must still agree across workers:

- the standardisation statistics, which come from every shard (all-reduced count, sums and
  sums of squares in float64), not from one worker's rows;
- the number of batches per epoch: DDP hangs when one worker runs out of batches before the
  others, so every worker pads its shard to the largest one (repeating rows of its own
  shuffled order, as ``DistributedSampler`` pads) and all run the same number of batches.

DP-SGD runs keep reading whole splits (Poisson sampling needs every row).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

from inhouse.errors import ConfigError


def _all_reduce(values: torch.Tensor, op: Any) -> torch.Tensor:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values, op=op)
    return values


def global_statistics(x: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased) standard deviation of the features over every worker's rows."""
    import torch.distributed as dist

    local = x.to(torch.float64)
    packed = torch.cat(
        [
            torch.tensor([float(local.shape[0])], dtype=torch.float64),
            local.sum(dim=0),
            (local * local).sum(dim=0),
        ]
    ).to(device)
    totals = _all_reduce(packed, dist.ReduceOp.SUM).cpu()
    n, width = totals[0], x.shape[1]
    if n < 2:
        raise ConfigError("standardising needs at least two training rows over all workers")
    mean = totals[1 : 1 + width] / n
    variance = (totals[1 + width :] - n * mean * mean) / (n - 1)
    std = variance.clamp(min=0.0).sqrt()
    return mean.to(torch.float32), std.to(torch.float32)


def set_statistics(standardize: torch.nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Give the model's standardising layer these statistics (constant columns keep std 1)."""
    buffers = dict(standardize.named_buffers())
    buffers["mean"].copy_(mean)
    buffers["std"].copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))


def agreed_rows(n_local: int, device: torch.device) -> int:
    """The largest shard's row count (what every worker pads to); refuses an empty shard."""
    import torch.distributed as dist

    both = torch.tensor([n_local, -n_local], dtype=torch.int64, device=device)
    largest, negated_smallest = (int(v) for v in _all_reduce(both, dist.ReduceOp.MAX).cpu())
    if -negated_smallest == 0:
        raise ConfigError(
            "a training worker's shard has no rows: use fewer workers (--num-workers) "
            "or more training rows"
        )
    return largest


class EqualBatchSampler(Sampler[int]):
    """This worker's rows in a fresh order each epoch, padded to ``total`` indices."""

    def __init__(self, n: int, total: int, *, seed: int, rank: int) -> None:
        if n <= 0 or total < n:
            raise ConfigError(f"cannot pad {n} rows to {total}")
        self.n, self.total, self.seed, self.rank = n, total, seed, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (as ``DistributedSampler.set_epoch``)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + 1_000_003 * self.epoch + 7_919 * self.rank)
        order = torch.randperm(self.n, generator=generator)
        repeats = math.ceil(self.total / self.n)
        return iter(order.repeat(repeats)[: self.total].tolist())

    def __len__(self) -> int:
        return self.total
