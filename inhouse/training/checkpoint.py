"""Training checkpoints without pickle: safetensors for tensors, JSON for the rest.

A checkpoint directory holds ``model.safetensors``, ``optimizer.safetensors`` (the
optimizer's per-parameter state flattened to ``<param index>.<key>``) and ``state.json``
(epoch, metrics, optimizer param groups, anything JSON-serialisable the caller adds).
With a key ring the two tensor files are envelope-encrypted (suffix ``.enc``, bound to
``<artifact_id>/<file>`` and the epoch), so plaintext weights never reach the disk;
without one, ``state.json`` holds their SHA-256. Every file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, save
from torch import nn

from inhouse.atomic import atomic_write_bytes
from inhouse.crypto import KeyRing, decrypt, encrypt
from inhouse.errors import ConfigError, IntegrityError

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
ENCRYPTED_SUFFIX = ".enc"


def _write(
    path: Path,
    tensors: dict[str, torch.Tensor],
    *,
    keyring: KeyRing | None,
    artifact_id: str,
    epoch: int,
) -> str | None:
    """Write one tensor file; returns its SHA-256 when it is stored in plaintext."""
    data = save(tensors)
    if keyring is None:
        atomic_write_bytes(path, data)
        return hashlib.sha256(data).hexdigest()
    sealed = encrypt(data, keyring=keyring, artifact_id=f"{artifact_id}/{path.name}", version=epoch)
    atomic_write_bytes(path.with_name(path.name + ENCRYPTED_SUFFIX), sealed)
    return None  # AES-GCM authenticates it


def _read(
    path: Path,
    *,
    keyring: KeyRing | None,
    artifact_id: str,
    epoch: int,
    device: str,
    digests: dict[str, str],
) -> dict[str, torch.Tensor]:
    sealed = path.with_name(path.name + ENCRYPTED_SUFFIX)
    if sealed.exists():
        if keyring is None:
            raise ConfigError(f"{sealed} is encrypted; pass the key ring to load it")
        data = decrypt(
            sealed.read_bytes(),
            keyring=keyring,
            artifact_id=f"{artifact_id}/{path.name}",
            version=epoch,
        )
    else:
        data = path.read_bytes()
        expected = digests.get(path.name)
        if expected is None or hashlib.sha256(data).hexdigest() != expected:
            raise IntegrityError(f"{path} does not match the hash in its checkpoint's state")
    try:
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error types on corrupt headers
        raise IntegrityError(f"{path} is not a valid tensor file: {exc}") from None
    return {k: v.to(device) for k, v in tensors.items()}


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP (or similar) wrapper."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def save_checkpoint(
    directory: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    keyring: KeyRing | None = None,
    artifact_id: str = "checkpoint",
) -> None:
    """Write a checkpoint into ``directory`` (which the caller renames or uploads atomically).

    ``state["epoch"]`` (default 0) is bound into the encryption, so checkpoints cannot be swapped.
    """
    epoch = int(state.get("epoch", 0))
    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}
    digests: dict[str, str] = {}
    digest = _write(
        directory / MODEL_FILE, weights, keyring=keyring, artifact_id=artifact_id, epoch=epoch
    )
    if digest:
        digests[MODEL_FILE] = digest
    opt_state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, param_state in opt_state["state"].items():
        for key, value in param_state.items():
            name = f"{index}.{key}"
            if isinstance(value, torch.Tensor):
                tensors[name] = value.detach().contiguous().cpu()
            else:
                scalars[name] = value
    digest = _write(
        directory / OPTIMIZER_FILE, tensors, keyring=keyring, artifact_id=artifact_id, epoch=epoch
    )
    if digest:
        digests[OPTIMIZER_FILE] = digest
    document = {
        "state": state,
        "param_groups": opt_state["param_groups"],
        "scalars": scalars,
        "artifact_id": artifact_id,
        "epoch": epoch,
        "sha256": digests,
    }
    atomic_write_bytes(directory / STATE_FILE, json.dumps(document).encode())


def load_checkpoint(
    directory: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    keyring: KeyRing | None = None,
) -> dict[str, Any]:
    """Restore weights (and optimizer state) in place; returns the caller's ``state`` dict."""
    device = str(next(unwrap(model).parameters()).device)
    try:
        document = json.loads((directory / STATE_FILE).read_text())
    except (UnicodeDecodeError, ValueError) as exc:
        raise IntegrityError(f"{directory / STATE_FILE} is corrupt or truncated: {exc}") from None
    if not isinstance(document, dict):
        raise IntegrityError(f"{directory / STATE_FILE} is not a checkpoint state")
    opening = {
        "keyring": keyring,
        "artifact_id": document.get("artifact_id", "checkpoint"),
        "epoch": int(document.get("epoch", 0)),
        "device": device,
        "digests": document.get("sha256") or {},
    }
    unwrap(model).load_state_dict(_read(directory / MODEL_FILE, **opening))
    if optimizer is not None:
        flat = _read(directory / OPTIMIZER_FILE, **opening)
        per_param: dict[int, dict[str, Any]] = {}
        for name, value in list(flat.items()) + list(document["scalars"].items()):
            index, key = name.split(".", 1)
            per_param.setdefault(int(index), {})[key] = value
        optimizer.load_state_dict({"state": per_param, "param_groups": document["param_groups"]})
    state: dict[str, Any] = document["state"]
    return state
