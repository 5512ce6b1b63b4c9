"""The artifact: codecs, exact round trips, architectures, and clear errors on damage."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from inhouse.compress import (
    Int8Linear,
    compress,
    dumps_compressed,
    load_compressed,
    prune_global_unstructured,
    read_manifest,
    save_compressed,
)
from inhouse.compress.encoding import decode, encode
from inhouse.config import CompressionSettings
from inhouse.errors import IntegrityError, InvalidInputError, UnsupportedFormatError


@pytest.mark.parametrize("density", [0.0, 0.03, 0.1, 0.3, 1.0])
@pytest.mark.parametrize("dtype", [torch.int8, torch.float16, torch.float32])
def test_codecs_round_trip(density: float, dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(1)
    dense = torch.randint(1, 100, (37, 53), generator=generator).to(dtype)
    keep = torch.rand(37, 53, generator=generator) < density
    tensor = torch.where(keep, dense, torch.zeros_like(dense))
    encoded = encode(tensor)
    assert torch.equal(decode(encoded.encoding, encoded.values, encoded.codes, [37, 53]), tensor)
    expected = {0.0: "delta", 0.03: "delta", 0.1: "delta", 0.3: "bitmask", 1.0: "dense"}
    if dtype == torch.int8 or density in (0.0, 1.0):
        assert encoded.encoding == expected[density]


def test_long_runs_of_zeros_use_escape_codes() -> None:
    tensor = torch.zeros(5000, dtype=torch.int8)
    tensor[[0, 16, 17, 4999]] = torch.tensor([1, 2, 3, 4], dtype=torch.int8)
    encoded = encode(tensor)
    assert encoded.encoding == "delta"
    assert torch.equal(decode("delta", encoded.values, encoded.codes, [5000]), tensor)


class TwoTower(nn.Module):
    """Not a Sequential: the artifact cannot describe it, so the loader needs build=."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Linear(8, 16)
        self.right = nn.Linear(8, 16, bias=False)
        self.head = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(torch.cat([self.left(x), self.right(x)], dim=-1).relu())
        return out


def test_custom_module_needs_build_and_round_trips_exactly() -> None:
    torch.manual_seed(0)
    model = TwoTower()
    settings = CompressionSettings(prune_amount=0.6, finetune_epochs=0, runtime="dynamic")
    compressed = compress(model, settings)
    assert all(m.mode == "dynamic" for m in compressed.modules() if isinstance(m, Int8Linear))
    data = dumps_compressed(compressed)
    with pytest.raises(InvalidInputError, match="build="):
        load_compressed(data)
    loaded = load_compressed(data, build=TwoTower)
    x = torch.randn(5, 8)
    with torch.inference_mode():
        assert torch.equal(loaded(x), compressed(x))
        weight_only = load_compressed(data, build=TwoTower, runtime="weight_only")
        assert torch.allclose(weight_only(x), compressed(x), atol=0.05)


def test_prune_only_stores_float16_sparse(parent: nn.Module, digits: Any) -> None:
    settings = CompressionSettings(quantize="none", finetune_epochs=0, prune_steps=1)
    compressed = compress(parent, settings)
    data = dumps_compressed(compressed)
    entries = {e[0]: e for e in read_manifest(data)["tensors"]}
    assert entries["1.weight"][1] == "delta" and entries["1.weight"][2] == "float16"
    loaded = load_compressed(data)
    with torch.inference_mode():
        assert torch.equal(loaded(digits.x_test), compressed(digits.x_test))


def test_save_is_atomic_into_a_new_directory(compressed: nn.Module, tmp_path: Path) -> None:
    target = tmp_path / "v1"
    size = save_compressed(compressed, target)
    assert [p.name for p in target.iterdir()] == ["model.safetensors"]
    assert (target / "model.safetensors").stat().st_size == size
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # a file path works as well as its directory
    assert isinstance(load_compressed(target / "model.safetensors"), nn.Sequential)


def test_pruning_masks_must_be_made_permanent(parent: nn.Module) -> None:
    import copy

    model = copy.deepcopy(parent)
    prune_global_unstructured(model, 0.5)
    with pytest.raises(InvalidInputError, match="make_permanent"):
        dumps_compressed(model)


def _with_manifest(data: bytes, manifest: str) -> bytes:
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    header["__metadata__"]["inhouse.compress"] = manifest
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + length :]


def test_damaged_artifacts_raise_clear_errors(compressed: nn.Module) -> None:
    data = dumps_compressed(compressed)
    manifest = read_manifest(data)
    with pytest.raises(IntegrityError, match="manifest"):
        load_compressed(_with_manifest(data, "{not json"))
    with pytest.raises(UnsupportedFormatError, match="inhouse.compress/9"):
        load_compressed(
            _with_manifest(data, json.dumps({**manifest, "format": "inhouse.compress/9"}))
        )
    with pytest.raises(IntegrityError, match="malformed"):
        load_compressed(_with_manifest(data, json.dumps({**manifest, "tensors": [["x", "zip"]]})))
    wrong_shape = json.loads(json.dumps(manifest))
    wrong_shape["tensors"][0][3] = [65]
    with pytest.raises(IntegrityError):
        load_compressed(_with_manifest(data, json.dumps(wrong_shape)))
    swapped_arch = {**manifest, "arch": [["Linear", 64, 64, 1], ["os.system", "rm"]]}
    with pytest.raises(IntegrityError, match="unknown layer"):
        load_compressed(_with_manifest(data, json.dumps(swapped_arch)))
    huge_arch = {**manifest, "arch": [["Linear", 1 << 20, 1 << 20, 1]]}
    with pytest.raises(IntegrityError, match="larger than"):
        load_compressed(_with_manifest(data, json.dumps(huge_arch)))
    with pytest.raises(IntegrityError, match="truncated"):
        load_compressed(data[:100])
    with pytest.raises(IntegrityError):
        load_compressed(data[:-50])


def test_tiny_weights_and_dead_rows_keep_float32_scales() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(70, 3)
    with torch.no_grad():
        linear.weight.mul_(1e-5)
        linear.weight[1] = 0.0
    model = nn.Sequential(linear)
    compressed = compress(model, CompressionSettings(prune_amount=0.0))
    layer = compressed.get_submodule("0")
    assert isinstance(layer, Int8Linear)
    assert layer.scale.dtype == torch.float32 and float(layer.scale[1]) == 1.0
    assert not torch.equal(layer.scale.half().float(), layer.scale)  # float16 would lose them
    x = torch.randn(4, 70)
    reference = model(x).detach()
    with torch.inference_mode():
        assert torch.allclose(compressed(x), reference, atol=1e-4)  # bias in float16
        assert torch.equal(load_compressed(dumps_compressed(compressed))(x), compressed(x))
