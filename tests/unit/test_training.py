"""The framework-free training loop and pickle-free checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from inhouse.kinds import build_model
from inhouse.models import MLPSpec
from inhouse.training import evaluate, load_checkpoint, save_checkpoint, train_one_epoch


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(256, 6) * 5 + 10
    y = (x[:, 0] > 10).long()
    return x, y


def test_training_learns_a_simple_rule() -> None:
    x, y = _data()
    model = build_model(MLPSpec(input_dim=6, hidden=[16], num_classes=2).model_dump())
    model[0].fit(x)  # type: ignore[operator]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    for _ in range(10):
        stats = train_one_epoch(model, loader, optimizer)
    assert stats.samples == 256
    assert evaluate(model, x, y).accuracy > 0.95


def test_checkpoint_round_trip_restores_model_and_optimizer(tmp_path: Path) -> None:
    x, y = _data()
    spec = MLPSpec(input_dim=6, hidden=[16], num_classes=2).model_dump()
    model = build_model(spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    train_one_epoch(model, DataLoader(TensorDataset(x, y), batch_size=64), optimizer)
    save_checkpoint(tmp_path, model=model, optimizer=optimizer, state={"epoch": 3})
    assert {p.name for p in tmp_path.iterdir()} == {
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
    }
    clone = build_model(spec)
    clone_opt = torch.optim.Adam(clone.parameters(), lr=1.0)
    opened = load_checkpoint(
        tmp_path, model=clone, optimizer=clone_opt, artifact_id="checkpoint", epoch=3
    )
    assert opened == {"epoch": 3}
    assert clone_opt.param_groups[0]["lr"] == 1e-2
    for a, b in zip(model.state_dict().values(), clone.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    state_a = optimizer.state_dict()["state"][0]
    state_b = clone_opt.state_dict()["state"][0]
    assert torch.equal(state_a["exp_avg"], state_b["exp_avg"])
    assert float(state_a["step"]) == float(state_b["step"])


def test_encrypted_checkpoint_has_no_plaintext_weights(tmp_path: Path) -> None:
    from inhouse.crypto import KeyRing
    from inhouse.errors import ConfigError, IntegrityError

    ring = KeyRing(tmp_path / "keys")
    ring.init()
    spec = MLPSpec(input_dim=6, hidden=[16], num_classes=2).model_dump()
    model = build_model(spec)
    optimizer = torch.optim.Adam(model.parameters())
    ckpt = tmp_path / "ckpt"
    save_checkpoint(
        ckpt,
        model=model,
        optimizer=optimizer,
        state={"epoch": 2},
        keyring=ring,
        artifact_id="run-1",
    )
    assert {p.name for p in ckpt.iterdir()} == {
        "model.safetensors.enc",
        "optimizer.safetensors.enc",
        "state.json.enc",
    }
    clone = build_model(spec)
    assert load_checkpoint(ckpt, model=clone, keyring=ring, artifact_id="run-1", epoch=2) == {
        "epoch": 2
    }
    assert torch.equal(clone[1].weight, model[1].weight)
    with pytest.raises(ConfigError, match="encrypted"):
        load_checkpoint(ckpt, model=clone, artifact_id="run-1", epoch=2)
    # opened as another epoch or run than it was sealed as: refused
    with pytest.raises(IntegrityError):
        load_checkpoint(ckpt, model=clone, keyring=ring, artifact_id="run-1", epoch=1)
    with pytest.raises(IntegrityError):
        load_checkpoint(ckpt, model=clone, keyring=ring, artifact_id="run-2", epoch=2)
