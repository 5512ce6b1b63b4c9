"""Sparse encodings of one tensor: the smallest of dense, bitmask and nibble-delta wins.

A tensor is stored as its nonzero *values* (in the tensor's own dtype) plus *codes* (uint8)
that say where the values go:

- ``dense``: every value, no codes.
- ``bitmask``: one bit per element (1 = nonzero), then the nonzero values in order.
- ``delta``: 4-bit codes over the flattened tensor (Deep Compression, Han et al. 2016):
  a code ``c < 15`` skips ``c`` zeros and places the next value; ``c == 15`` skips 15 zeros
  and places nothing. Two codes per byte, low nibble first; an odd count is padded with 15.

Bitmask costs ``numel / 8`` bytes at any density; delta costs about ``nnz / 2`` bytes, so delta
wins below ~20% density (a pruned layer) and dense wins when few entries are zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from inhouse.errors import IntegrityError

Encoding = Literal["dense", "bitmask", "delta"]
ENCODINGS: tuple[Encoding, ...] = ("dense", "bitmask", "delta")

_ESCAPE = 15
_SPARSE_MIN_NUMEL = 64  # below this the index bytes never pay for themselves


@dataclass(frozen=True)
class Encoded:
    """One encoded tensor: ``values`` keep the dtype, ``codes`` are uint8 (empty for dense)."""

    encoding: Encoding
    values: torch.Tensor
    codes: torch.Tensor

    @property
    def nbytes(self) -> int:
        """Bytes this encoding occupies in the artifact (values + codes)."""
        return self.values.numel() * self.values.element_size() + self.codes.numel()


def _empty_codes() -> torch.Tensor:
    return torch.empty(0, dtype=torch.uint8)


def _encode_bitmask(flat: torch.Tensor, nonzero: torch.Tensor) -> Encoded:
    bits = torch.zeros(-(-flat.numel() // 8) * 8, dtype=torch.uint8)
    bits[: flat.numel()] = nonzero.to(torch.uint8)
    weights = torch.tensor([1 << i for i in range(8)], dtype=torch.uint8)
    packed = (bits.view(-1, 8) * weights).sum(dim=1, dtype=torch.int32).to(torch.uint8)
    return Encoded("bitmask", flat[nonzero], packed)


def _encode_delta(flat: torch.Tensor, nonzero: torch.Tensor) -> Encoded:
    positions = torch.nonzero(nonzero).flatten()
    previous = torch.cat([torch.tensor([-1]), positions[:-1]])
    skipped = positions - previous - 1
    escapes, remainder = skipped // _ESCAPE, skipped % _ESCAPE
    per_value = escapes + 1
    codes = torch.full((int(per_value.sum()),), _ESCAPE, dtype=torch.uint8)
    codes[torch.cumsum(per_value, 0) - 1] = remainder.to(torch.uint8)
    if codes.numel() % 2:
        codes = torch.cat([codes, torch.tensor([_ESCAPE], dtype=torch.uint8)])
    pairs = codes.view(-1, 2)
    packed = pairs[:, 0] | (pairs[:, 1] << 4)
    return Encoded("delta", flat[nonzero], packed)


def encode(tensor: torch.Tensor) -> Encoded:
    """Encode ``tensor`` with whichever encoding takes the fewest bytes (dense on ties)."""
    flat = tensor.detach().contiguous().flatten()
    dense = Encoded("dense", flat, _empty_codes())
    if flat.numel() < _SPARSE_MIN_NUMEL or flat.dtype == torch.bool:
        return dense
    nonzero = flat != 0
    candidates = [dense, _encode_bitmask(flat, nonzero), _encode_delta(flat, nonzero)]
    return min(candidates, key=lambda item: item.nbytes)


def _decode_bitmask(values: torch.Tensor, codes: torch.Tensor, numel: int) -> torch.Tensor:
    if codes.numel() != -(-numel // 8):
        raise IntegrityError(f"bitmask has {codes.numel()} bytes, expected {-(-numel // 8)}")
    shifts = torch.arange(8, dtype=torch.uint8)
    mask = ((codes.unsqueeze(1) >> shifts) & 1).flatten().bool()
    if bool(mask[numel:].any()):
        raise IntegrityError("bitmask marks elements past the end of the tensor")
    mask = mask[:numel]
    if int(mask.sum()) != values.numel():
        raise IntegrityError("bitmask and value count disagree")
    out = torch.zeros(numel, dtype=values.dtype)
    out[mask] = values
    return out


def _decode_delta(values: torch.Tensor, codes: torch.Tensor, numel: int) -> torch.Tensor:
    nibbles = torch.stack([codes & 0x0F, codes >> 4], dim=1).flatten().to(torch.int64)
    is_value = nibbles != _ESCAPE
    advance = torch.where(is_value, nibbles + 1, torch.full_like(nibbles, _ESCAPE))
    positions = (torch.cumsum(advance, 0) - 1)[is_value]
    if positions.numel() != values.numel():
        raise IntegrityError("delta codes and value count disagree")
    if positions.numel() and int(positions[-1]) >= numel:
        raise IntegrityError("delta codes point past the end of the tensor")
    out = torch.zeros(numel, dtype=values.dtype)
    out[positions] = values
    return out


def decode(
    encoding: str, values: torch.Tensor, codes: torch.Tensor, shape: list[int]
) -> torch.Tensor:
    """Rebuild the dense tensor of ``shape``; inconsistent input raises IntegrityError."""
    numel = 1
    for size in shape:
        numel *= size
    if encoding == "dense":
        if values.numel() != numel or codes.numel():
            raise IntegrityError(f"dense tensor has {values.numel()} values, expected {numel}")
        flat = values
    elif encoding == "bitmask":
        flat = _decode_bitmask(values, codes, numel)
    elif encoding == "delta":
        flat = _decode_delta(values, codes, numel)
    else:
        raise IntegrityError(f"unknown tensor encoding {encoding!r}")
    return flat.reshape(shape)
