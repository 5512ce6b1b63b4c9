"""Training checkpoints without pickle: safetensors for tensors, JSON for the rest.

A checkpoint directory holds ``model.safetensors``, ``optimizer.safetensors`` (the
optimizer's per-parameter state flattened to ``<param index>.<key>``) and ``state.json``
(epoch, metrics, optimizer param groups, anything JSON-serialisable the caller adds, and the
SHA-256 of both tensor files). With a key ring all three are envelope-encrypted (suffix
``.enc``), each bound to ``<artifact_id>/<file>`` and the epoch: plaintext weights never reach
the disk, and the sealed state, which holds the tensor files' hashes, authenticates the
checkpoint as a whole. The reader is told the artifact id (the run) and the epoch by its caller,
never by the files, and with a key ring refuses a checkpoint holding any plaintext file. Every
file is written atomically. The layout is specified in ``docs/artifact-format.md``.
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
FILES = (MODEL_FILE, OPTIMIZER_FILE, STATE_FILE)
# The state document's fields and their JSON types; anything else is not a checkpoint state.
_SHAPE: dict[str, type] = {
    "state": dict,
    "param_groups": list,
    "scalars": dict,
    "artifact_id": str,
    "epoch": int,
    "sha256": dict,
}


def _sealed(path: Path) -> Path:
    return path.with_name(path.name + ENCRYPTED_SUFFIX)


def _bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(
            f"checkpoint {path.parent} is incomplete: {path.name} is missing"
        ) from None


def _store(
    path: Path, data: bytes, *, keyring: KeyRing | None, artifact_id: str, epoch: int
) -> None:
    """Write one file of a checkpoint: sealed (``.enc``, bound to run, file and epoch) with a
    key ring, else in plaintext."""
    if keyring is None:
        atomic_write_bytes(path, data)
        return
    sealed = encrypt(data, keyring=keyring, artifact_id=f"{artifact_id}/{path.name}", version=epoch)
    atomic_write_bytes(_sealed(path), sealed)


def _fetch(path: Path, *, keyring: KeyRing | None, artifact_id: str, epoch: int) -> bytes:
    """Read one file of a checkpoint: only the sealed one with a key ring, else the plaintext."""
    if keyring is None:
        return _bytes(path)
    return decrypt(
        _bytes(_sealed(path)),
        keyring=keyring,
        artifact_id=f"{artifact_id}/{path.name}",
        version=epoch,
    )


def _read(
    path: Path,
    *,
    keyring: KeyRing | None,
    artifact_id: str,
    epoch: int,
    device: str,
    digests: dict[str, Any],
) -> dict[str, torch.Tensor]:
    data = _fetch(path, keyring=keyring, artifact_id=artifact_id, epoch=epoch)
    expected = digests.get(path.name)
    if not isinstance(expected, str) or hashlib.sha256(data).hexdigest() != expected:
        raise IntegrityError(f"{path} does not match the hash in its checkpoint's state")
    try:
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error types on corrupt headers
        raise IntegrityError(f"{path} is not a valid tensor file: {exc}") from None
    return {k: v.to(device) for k, v in tensors.items()}


def _open_state(
    directory: Path, *, keyring: KeyRing | None, artifact_id: str, epoch: int
) -> dict[str, Any]:
    """The checkpoint's state document, after checking that it is the one the caller expects."""
    if keyring is not None:
        plain = [name for name in FILES if (directory / name).exists()]
        if plain:
            raise IntegrityError(
                f"checkpoint {directory} holds plaintext {', '.join(plain)}: with encryption at "
                "rest on, only sealed checkpoints load (inhouse never writes these with a key ring)"
            )
    else:
        sealed = [_sealed(directory / name).name for name in FILES]
        if any((directory / name).exists() for name in sealed):
            raise ConfigError(f"checkpoint {directory} is encrypted; pass the key ring to load it")
    payload = _fetch(directory / STATE_FILE, keyring=keyring, artifact_id=artifact_id, epoch=epoch)
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise IntegrityError(f"{directory / STATE_FILE} is corrupt or truncated: {exc}") from None
    if not isinstance(document, dict) or not all(
        isinstance(document.get(key), kind) for key, kind in _SHAPE.items()
    ):
        raise IntegrityError(f"{directory / STATE_FILE} is not a checkpoint state")
    if document["artifact_id"] != artifact_id or document["epoch"] != epoch:
        raise IntegrityError(
            f"checkpoint {directory} is {document['artifact_id']!r} epoch {document['epoch']}, "
            f"not {artifact_id!r} epoch {epoch}"
        )
    return document


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

    ``artifact_id`` (the run) and ``state["epoch"]`` (default 0) are bound into the encryption
    of every file, so checkpoints cannot be swapped; the reader must name both.
    """
    epoch = int(state.get("epoch", 0))
    directory.mkdir(parents=True, exist_ok=True)
    sealing: dict[str, Any] = {"keyring": keyring, "artifact_id": artifact_id, "epoch": epoch}
    weights = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}
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
    digests: dict[str, str] = {}
    for filename, content in ((MODEL_FILE, weights), (OPTIMIZER_FILE, tensors)):
        data = save(content)
        _store(directory / filename, data, **sealing)
        digests[filename] = hashlib.sha256(data).hexdigest()
    document = {
        "state": state,
        "param_groups": opt_state["param_groups"],
        "scalars": scalars,
        "artifact_id": artifact_id,
        "epoch": epoch,
        "sha256": digests,
    }
    # Written last: the state commits to the tensor files through their hashes.
    _store(directory / STATE_FILE, json.dumps(document).encode(), **sealing)


def load_checkpoint(
    directory: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    keyring: KeyRing | None = None,
    artifact_id: str,
    epoch: int,
) -> dict[str, Any]:
    """Restore weights (and optimizer state) in place; returns the caller's ``state`` dict.

    ``artifact_id`` and ``epoch`` are what the caller expects (its run, and the epoch it knows
    this checkpoint is of, e.g. from Ray's record of the report that made it), never what the
    files say. With a key ring every file must be sealed and bound to both; without one, the
    plaintext state must name both and hold the tensor files' hashes.

    Raises:
        IntegrityError: a plaintext file where a key ring is configured, a missing, tampered
            or truncated file, or a checkpoint of another run or epoch.
        ConfigError: an encrypted checkpoint and no key ring.
    """
    device = str(next(unwrap(model).parameters()).device)
    document = _open_state(directory, keyring=keyring, artifact_id=artifact_id, epoch=epoch)
    opening = {
        "keyring": keyring,
        "artifact_id": artifact_id,
        "epoch": epoch,
        "device": device,
        "digests": document["sha256"],
    }
    unwrap(model).load_state_dict(_read(directory / MODEL_FILE, **opening))
    if optimizer is not None:
        flat = _read(directory / OPTIMIZER_FILE, **opening)
        per_param: dict[int, dict[str, Any]] = {}
        for name, value in list(flat.items()) + list(document["scalars"].items()):
            index, _, key = name.partition(".")
            if not index.isdigit() or not key:
                raise IntegrityError(f"{directory / STATE_FILE} names no parameter in {name!r}")
            per_param.setdefault(int(index), {})[key] = value
        optimizer.load_state_dict({"state": per_param, "param_groups": document["param_groups"]})
    state: dict[str, Any] = document["state"]
    return state
