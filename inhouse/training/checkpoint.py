"""Training checkpoints without pickle: safetensors for tensors, JSON for the rest.

A checkpoint directory holds ``model.safetensors``, ``optimizer.safetensors`` (the
optimizer's per-parameter state flattened to ``<param index>.<key>``) and ``state.json``
(epoch, metrics, optimizer param groups, anything JSON-serialisable the caller adds).
With a key ring the two tensor files are envelope-encrypted (suffix ``.enc``, bound to
``<artifact_id>/<file>`` and the epoch), so plaintext weights never reach the disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, save
from torch import nn

from inhouse.crypto import KeyRing, decrypt, encrypt
from inhouse.errors import ConfigError

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
) -> None:
    data = save(tensors)
    if keyring is None:
        path.write_bytes(data)
        return
    sealed = encrypt(data, keyring=keyring, artifact_id=f"{artifact_id}/{path.name}", version=epoch)
    path.with_name(path.name + ENCRYPTED_SUFFIX).write_bytes(sealed)


def _read(
    path: Path, *, keyring: KeyRing | None, artifact_id: str, epoch: int, device: str
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
    return {k: v.to(device) for k, v in load(data).items()}


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
    _write(directory / MODEL_FILE, weights, keyring=keyring, artifact_id=artifact_id, epoch=epoch)
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
    _write(directory / OPTIMIZER_FILE, tensors, keyring=keyring, artifact_id=artifact_id,
           epoch=epoch)
    document = {
        "state": state,
        "param_groups": opt_state["param_groups"],
        "scalars": scalars,
        "artifact_id": artifact_id,
        "epoch": epoch,
    }
    (directory / STATE_FILE).write_text(json.dumps(document))


def load_checkpoint(
    directory: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    keyring: KeyRing | None = None,
) -> dict[str, Any]:
    """Restore weights (and optimizer state) in place; returns the caller's ``state`` dict."""
    device = str(next(unwrap(model).parameters()).device)
    document = json.loads((directory / STATE_FILE).read_text())
    opening = {
        "keyring": keyring,
        "artifact_id": document.get("artifact_id", "checkpoint"),
        "epoch": int(document.get("epoch", 0)),
        "device": device,
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
