"""Training checkpoints without pickle: safetensors for tensors, JSON for the rest.

A checkpoint directory holds ``model.safetensors``, ``optimizer.safetensors`` (the
optimizer's per-parameter state flattened to ``<param index>.<key>``) and ``state.json``
(epoch, metrics, optimizer param groups, anything JSON-serialisable the caller adds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP (or similar) wrapper."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def save_checkpoint(
    directory: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Write a checkpoint into ``directory`` (which the caller renames or uploads atomically)."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}
    save_file(weights, str(directory / MODEL_FILE))
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
    save_file(tensors, str(directory / OPTIMIZER_FILE))
    document = {"state": state, "param_groups": opt_state["param_groups"], "scalars": scalars}
    (directory / STATE_FILE).write_text(json.dumps(document))


def load_checkpoint(
    directory: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Any]:
    """Restore weights (and optimizer state) in place; returns the caller's ``state`` dict."""
    device = next(unwrap(model).parameters()).device
    unwrap(model).load_state_dict(load_file(str(directory / MODEL_FILE), device=str(device)))
    document = json.loads((directory / STATE_FILE).read_text())
    if optimizer is not None:
        flat = load_file(str(directory / OPTIMIZER_FILE), device=str(device))
        per_param: dict[int, dict[str, Any]] = {}
        for name, value in list(flat.items()) + list(document["scalars"].items()):
            index, key = name.split(".", 1)
            per_param.setdefault(int(index), {})[key] = value
        optimizer.load_state_dict({"state": per_param, "param_groups": document["param_groups"]})
    state: dict[str, Any] = document["state"]
    return state
