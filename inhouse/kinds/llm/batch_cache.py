"""The running batch of the generation engine: a left-padded KV cache shared by the rows.

Each row is one sequence. Columns are cache positions; a row's prompt and tokens sit at its
right end and the columns to its left are padding that its attention mask hides. Rows keep
their own position ids, so a sequence computes what it would compute alone. The layout
changes only when the membership does: :func:`merge` adds prefilled rows (left-padding the
shorter side) and :meth:`Batch.keep` drops rows, then trims columns that are padding in every
row left.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


@dataclass
class Batch:
    """KV cache (one ``[rows, heads, columns, dim]`` pair per layer) and its bookkeeping.

    Attributes:
        cache: the model's KV cache of the cached columns (kept across decode steps; rebuilt
            only when rows come or go).
        mask: ``[rows, columns]``, 1 where a column holds a real token of the row.
        positions: ``[rows]``, the position id of each row's next token.
        pending: ``[rows, 1]``, the token each row feeds to the next forward pass.
    """

    cache: DynamicCache
    mask: torch.Tensor
    positions: torch.Tensor
    pending: torch.Tensor

    @property
    def rows(self) -> int:
        return int(self.mask.shape[0])

    @property
    def columns(self) -> int:
        return int(self.mask.shape[1])

    def keep(self, rows: list[int]) -> Batch:
        """Only ``rows`` (in that order), without the columns that are padding in all of them."""
        index = torch.tensor(rows, dtype=torch.long, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        used = mask.any(dim=0).nonzero()
        start = int(used[0, 0]) if used.numel() else self.columns
        return Batch(
            cache=_cache(
                (k.index_select(0, index)[:, :, start:], v.index_select(0, index)[:, :, start:])
                for k, v in _kv_of(self.cache)
            ),
            mask=mask[:, start:],
            positions=self.positions.index_select(0, index),
            pending=self.pending.index_select(0, index),
        )


def _kv_of(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    kv = []
    for layer in cache.layers:
        if not isinstance(layer, DynamicLayer) or layer.keys is None or layer.values is None:
            raise TypeError(f"{type(layer).__name__} cache layers cannot be batched here")
        kv.append((layer.keys, layer.values))
    return kv


def _cache(kv: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    """A cache holding ``kv`` (one full-attention layer per pair)."""
    return DynamicCache(ddp_cache_data=list(kv))


def _left_pad(tensor: torch.Tensor, columns: int, dim: int) -> torch.Tensor:
    """``tensor`` with ``columns`` zero columns prepended along ``dim``."""
    if columns == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = columns
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def merge(old: Batch | None, new: Batch) -> Batch:
    """The rows of ``old`` then those of ``new``, padded on the left to the same columns."""
    if old is None or old.rows == 0:
        return new
    width = max(old.columns, new.columns)
    pad_old, pad_new = width - old.columns, width - new.columns
    return Batch(
        cache=_cache(
            (
                torch.cat([_left_pad(ko, pad_old, 2), _left_pad(kn, pad_new, 2)]),
                torch.cat([_left_pad(vo, pad_old, 2), _left_pad(vn, pad_new, 2)]),
            )
            for (ko, vo), (kn, vn) in zip(_kv_of(old.cache), _kv_of(new.cache), strict=True)
        ),
        mask=torch.cat([_left_pad(old.mask, pad_old, 1), _left_pad(new.mask, pad_new, 1)]),
        positions=torch.cat([old.positions, new.positions]),
        pending=torch.cat([old.pending, new.pending]),
    )


def _forward(
    module: nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    positions: torch.Tensor,
    cache: DynamicCache,
) -> torch.Tensor:
    """Logits ``[rows, vocab]`` (float) of the last input column; ``cache`` grows by ``ids``."""
    out = module(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        cache=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    logits: torch.Tensor = out.logits[:, -1, :]
    return logits.float()


def prefill(
    module: nn.Module, prompts: list[list[int]], device: torch.device
) -> tuple[Batch, torch.Tensor]:
    """Run ``prompts`` (left-padded into one batch); their rows and next-token logits.

    The rows' ``pending`` tokens are placeholders until the caller samples them.
    """
    width = max(len(prompt) for prompt in prompts)
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    cache = DynamicCache()
    logits = _forward(module, ids, mask, positions, cache)
    batch = Batch(
        cache=cache,
        mask=mask,
        positions=positions[:, -1] + 1,
        pending=torch.zeros((len(prompts), 1), dtype=torch.long, device=device),
    )
    return batch, logits


def decode(module: nn.Module, batch: Batch) -> tuple[Batch, torch.Tensor]:
    """One forward pass of every row's pending token; the grown batch and next-token logits."""
    mask = torch.cat([batch.mask, batch.mask.new_ones((batch.rows, 1))], dim=1)
    logits = _forward(module, batch.pending, mask, batch.positions.unsqueeze(1), batch.cache)
    grown = Batch(batch.cache, mask=mask, positions=batch.positions + 1, pending=batch.pending)
    return grown, logits
