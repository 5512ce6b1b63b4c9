"""The compressed artifact: one safetensors file of packed int8/uint8/float16 pools + a manifest.

Layout (``model.safetensors``; the same bytes travel in memory through :func:`dumps_compressed`)::

    tensors   one per dtype ("int8", "float16", ...): the values of every tensor, concatenated,
              plus "codes" (uint8): the sparse index codes (see inhouse.compress.encoding)
    metadata  {"inhouse.compress": <manifest JSON>}

    manifest  {"format": "inhouse.compress/1",
               "arch": [["Standardize", 64], ["Linear", 64, 64, 1], ...] | null,
               "dynamic": [names of the int8 Linear layers that run the dynamic kernel],
               "tensors": [[name, encoding, pool, shape, n_values, n_codes], ...]}

Tensors appear in state-dict order and take their values and codes from the pools in turn, so
offsets need not be stored (a few hundred bytes matter: the Digits MLP compresses to ~3 KB).
A module with ``<name>.qweight`` and ``<name>.scale`` is int8: a Linear or an Embedding as the
rebuilt float architecture says. An int8 Linear may also hold ``<name>.smooth`` (float,
``[in_features]``): factors its input is multiplied by before the int8 matmul (SmoothQuant);
the stored weight already has its columns divided by them. Artifacts without it load as before.
Float32 tensors that float16 holds exactly are stored as float16. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from inhouse.atomic import atomic_directory, atomic_write_bytes
from inhouse.compress import arch
from inhouse.compress.encoding import ENCODINGS, decode, encode
from inhouse.compress.layers import Int8Embedding, Int8Linear, LinearMode
from inhouse.compress.quantize import choose_mode
from inhouse.config import Runtime
from inhouse.errors import IntegrityError, InvalidInputError, UnsupportedFormatError

FORMAT = "inhouse.compress/1"
METADATA_KEY = "inhouse.compress"
FILENAME = "model.safetensors"
CODES_POOL = "codes"
_MAX_NUMEL = 1 << 32

Build = Callable[[], nn.Module]
Source = str | os.PathLike[str] | bytes


def _storable(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.float32 and torch.equal(tensor.half().float(), tensor):
        return tensor.half()
    return tensor


def dumps_compressed(module: nn.Module) -> bytes:
    """Encode ``module`` (pruned and/or quantized) as artifact bytes."""
    state = module.state_dict()
    if any(key.endswith(("_orig", "_mask")) for key in state):
        raise InvalidInputError("the model still has pruning masks; call make_permanent first")
    pools: dict[str, list[torch.Tensor]] = {}
    entries: list[list[Any]] = []
    for name, tensor in state.items():
        stored = _storable(tensor)
        encoded = encode(stored)
        pool = str(stored.dtype).removeprefix("torch.")
        pools.setdefault(pool, []).append(encoded.values)
        pools.setdefault(CODES_POOL, []).append(encoded.codes)
        shape = list(stored.shape)
        entries.append(
            [name, encoded.encoding, pool, shape, encoded.values.numel(), encoded.codes.numel()]
        )
    manifest = {
        "format": FORMAT,
        "arch": arch.describe(module),
        "dynamic": [
            name
            for name, layer in module.named_modules()
            if isinstance(layer, Int8Linear) and layer.mode == "dynamic"
        ],
        "tensors": entries,
    }
    tensors = {
        pool: torch.cat(parts) for pool, parts in pools.items() if sum(p.numel() for p in parts)
    }
    metadata = {METADATA_KEY: json.dumps(manifest, separators=(",", ":"))}
    return safetensors.torch.save(tensors, metadata=metadata)


def save_compressed(module: nn.Module, directory: str | os.PathLike[str]) -> int:
    """Write the artifact of ``module`` into the new ``directory`` atomically; returns its bytes."""
    data = dumps_compressed(module)
    with atomic_directory(directory) as tmp:
        atomic_write_bytes(tmp / FILENAME, data)
    return len(data)


def artifact_size(directory: str | os.PathLike[str]) -> int:
    """Bytes of every file of a saved artifact."""
    return sum(path.stat().st_size for path in Path(directory).iterdir() if path.is_file())


def float32_size(module: nn.Module) -> int:
    """Bytes of ``module``'s state dict as a plain float32 safetensors file (the baseline)."""
    state = {
        name: (t.float() if t.is_floating_point() else t).detach().cpu().contiguous().clone()
        for name, t in module.state_dict().items()
    }
    return len(safetensors.torch.save(state))


def read_manifest(data: bytes) -> dict[str, Any]:
    """The validated manifest of artifact ``data``; a damaged one raises IntegrityError."""
    if len(data) < 8:
        raise IntegrityError("compressed artifact is truncated (no safetensors header)")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise IntegrityError("compressed artifact is truncated (header runs past the end)")
    try:
        header = json.loads(data[8 : 8 + length])
        manifest = json.loads(header["__metadata__"][METADATA_KEY])
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"compressed artifact has no readable manifest: {exc}") from exc
    if not isinstance(manifest, dict):
        raise IntegrityError("compressed artifact manifest is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise UnsupportedFormatError(
            f"compressed artifact format {manifest.get('format')!r} is not {FORMAT!r}; "
            "upgrade inhouse to read it"
        )
    _check_manifest(manifest)
    return manifest


def _check_manifest(manifest: dict[str, Any]) -> None:
    dynamic = manifest.get("dynamic")
    if not isinstance(dynamic, list) or not all(isinstance(name, str) for name in dynamic):
        raise IntegrityError("manifest field dynamic is malformed")
    entries = manifest.get("tensors")
    if not isinstance(entries, list):
        raise IntegrityError("manifest field tensors is malformed")
    for entry in entries:
        ok = (
            isinstance(entry, list)
            and len(entry) == 6
            and isinstance(entry[0], str)
            and entry[1] in ENCODINGS
            and isinstance(entry[2], str)
            and isinstance(entry[3], list)
            and all(type(v) is int and v >= 0 for v in [*entry[3], entry[4], entry[5]])
        )
        if not ok:
            raise IntegrityError(f"manifest tensor entry is malformed: {entry!r}")
        numel = 1
        for size in entry[3]:
            numel *= size
        if numel > _MAX_NUMEL:
            raise IntegrityError(f"manifest tensor {entry[0]!r} is implausibly large")


def _decode_state(data: bytes, manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    try:
        pools = safetensors.torch.load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise IntegrityError(f"compressed artifact tensors are unreadable: {exc}") from exc
    for key, pool_tensor in pools.items():
        expected = "uint8" if key == CODES_POOL else key
        if str(pool_tensor.dtype).removeprefix("torch.") != expected or pool_tensor.dim() != 1:
            raise IntegrityError(f"pool {key!r} holds {pool_tensor.dtype}, not {expected}")
    offsets = dict.fromkeys(pools, 0)
    state: dict[str, torch.Tensor] = {}
    empty = torch.empty(0, dtype=torch.uint8)
    for name, encoding, pool, shape, n_values, n_codes in manifest["tensors"]:
        parts = []
        for key, count in ((pool, n_values), (CODES_POOL, n_codes)):
            if count == 0:
                parts.append(pools[key][:0] if key in pools else empty)
                continue
            start = offsets.get(key, 0)
            if key not in pools or start + count > pools[key].numel():
                raise IntegrityError(f"tensor {name!r} runs past the end of pool {key!r}")
            parts.append(pools[key][start : start + count])
            offsets[key] = start + count
        state[name] = decode(encoding, parts[0], parts[1], shape)
    if any(offsets[key] != pools[key].numel() for key in pools):
        raise IntegrityError("compressed artifact has bytes no tensor accounts for")
    return state


def _swap_int8_layers(
    skeleton: nn.Module,
    manifest: dict[str, Any],
    state: dict[str, torch.Tensor],
    runtime: Runtime | None,
) -> None:
    dynamic = set(manifest["dynamic"])
    for key in state:
        name = key.removesuffix(".qweight")
        if name == key or f"{name}.scale" not in state:
            continue
        layer = skeleton.get_submodule(name)
        if isinstance(layer, (nn.Linear, Int8Linear)):
            mode: LinearMode = "dynamic" if name in dynamic else "weight_only"
            if runtime is not None:
                mode = choose_mode(layer.in_features, layer.out_features, runtime)
            new: nn.Module = Int8Linear(
                layer.in_features,
                layer.out_features,
                bias=layer.bias is not None,
                scale_rows=state[f"{name}.scale"].numel(),
                mode=mode,
                smooth=f"{name}.smooth" in state,
            )
        elif isinstance(layer, (nn.Embedding, Int8Embedding)):
            new = Int8Embedding(
                layer.num_embeddings, layer.embedding_dim, padding_idx=layer.padding_idx
            )
        else:
            continue
        skeleton.set_submodule(name, new, strict=True)


def _numel(module: nn.Module) -> int:
    return sum(t.numel() for t in [*module.parameters(), *module.buffers()])


def load_compressed(
    source: Source, *, build: Build | None = None, runtime: Runtime | None = None
) -> nn.Module:
    """The ready-to-serve module (eval mode) of an artifact directory, file or bytes.

    ``build`` returns the float architecture (e.g. a fresh BERT) when the artifact holds none.
    ``runtime`` overrides the int8 kernel chosen at compression time.
    """
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        data = (path / FILENAME if path.is_dir() else path).read_bytes()
    manifest = read_manifest(data)
    state = _decode_state(data, manifest)
    if build is not None:
        skeleton = build()
    elif manifest["arch"] is not None:
        with torch.device("meta"):  # sizes first: a forged spec must not allocate gigabytes
            probe = arch.build(manifest["arch"])
        if _numel(probe) > sum(tensor.numel() for tensor in state.values()):
            raise IntegrityError("architecture spec is larger than the tensors in the artifact")
        skeleton = arch.build(manifest["arch"])
    else:
        raise InvalidInputError("this artifact has no architecture spec; pass build=")
    try:
        _swap_int8_layers(skeleton, manifest, state, runtime)
        skeleton.load_state_dict(state, strict=True)
    except (AttributeError, RuntimeError) as exc:
        raise IntegrityError(f"artifact does not fit the model: {exc}") from exc
    for layer in skeleton.modules():
        if isinstance(layer, (Int8Linear, Int8Embedding)):
            layer.refresh()
    return skeleton.eval()
