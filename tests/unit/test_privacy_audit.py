"""Membership-inference audit: real attacks on small digits MLPs, DP (Opacus) and not."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from opacus import PrivacyEngine
from sklearn.datasets import load_digits
from sqlalchemy import Engine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from inhouse.data import create_dataset, read_rows
from inhouse.data.store import validate_rows
from inhouse.errors import InvalidInputError
from inhouse.kinds import register_module
from inhouse.membership.attack import dp_bounds, membership_inference
from inhouse.membership.audit import audit_version
from inhouse.models import MLPSpec, build_mlp
from inhouse.privacy import Mechanism, PrivacyLedger
from inhouse.registry import Registry
from inhouse.schema import get_engine
from inhouse.training import train_one_epoch

N = 150  # members and held-out rows: few enough rows that a non-DP MLP memorises them
EPOCHS = 30
CONFIG = {"epochs": EPOCHS, "batch_size": 32, "lr": 3e-3, "seed": 0}
SPEC = MLPSpec(input_dim=64, hidden=[64, 64], num_classes=10).model_dump()


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models: one thread is fastest, and spares a shared machine's cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _digits_split(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Digits in a random order: any two slices are samples of the same distribution."""
    bunch = load_digits()
    order = np.random.default_rng(seed).permutation(len(bunch.target))
    x = torch.tensor(bunch.data[order], dtype=torch.float32)
    return x, torch.tensor(bunch.target[order]), order


def _train(x: torch.Tensor, y: torch.Tensor, *, noise: float | None = None) -> nn.Module:
    """The spec's MLP; with ``noise``, DP-SGD through Opacus (Poisson batches, clip 1.0) and
    fixed public scaling (pixels are 0..16), as a DP run must not fit statistics on rows."""
    torch.manual_seed(0)
    model = build_mlp(MLPSpec.model_validate(SPEC))
    scale = model[0]
    if noise is None:
        scale.fit(x)  # type: ignore[operator]
    else:
        scale.mean.fill_(8.0)  # type: ignore[operator]
        scale.std.fill_(16 / 12**0.5)  # type: ignore[operator]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loader = DataLoader(
        TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    trained: nn.Module = model
    if noise is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            engine = PrivacyEngine(accountant="rdp")
            trained, optimizer, loader = engine.make_private(
                module=model,
                optimizer=optimizer,
                data_loader=loader,
                noise_multiplier=noise,
                max_grad_norm=1.0,
            )
    for _ in range(EPOCHS):
        train_one_epoch(trained, loader, optimizer)
    return model.eval()


def test_the_attacks_see_an_overfit_model_and_chance_on_unseen_rows() -> None:
    x, y, _ = _digits_split()
    members, held_out, other = (
        (x[:N], y[:N]),
        (x[N : 2 * N], y[N : 2 * N]),
        (x[2 * N :], y[2 * N :]),
    )
    model = _train(*members)
    result = membership_inference(model, members, held_out)
    assert result.members == result.non_members == N
    assert result.member_accuracy == 1.0 and result.non_member_accuracy < 0.97
    assert result.loss_auc > 0.6 and result.lira_auc > 0.57  # measured 0.66 and 0.62
    # "Members" the model never saw: both attacks are at chance.
    null = membership_inference(model, held_out, (other[0][:400], other[1][:400]), seed=1)
    assert null.members == N  # balanced down to the smaller side
    assert abs(null.loss_auc - 0.5) < 0.1 and abs(null.lira_auc - 0.5) < 0.1
    for attack in (result, null):
        for rate in ("loss_auc", "loss_tpr_at_1pct_fpr", "lira_auc", "lira_tpr_at_1pct_fpr"):
            assert 0.0 <= getattr(attack, rate) <= 1.0
    with pytest.raises(InvalidInputError):
        membership_inference(model, (x[:5], y[:5]), held_out)


def test_dp_bounds() -> None:
    assert dp_bounds(0.0, 0.0) == pytest.approx((0.5, 0.01), abs=1e-6)
    auc1, tpr1 = dp_bounds(1.0, 1e-5)
    assert tpr1 == pytest.approx(np.e * 0.01 + 1e-5)
    assert 0.5 < auc1 < dp_bounds(2.0, 1e-5)[0] < dp_bounds(8.0, 1e-5)[0] <= 1.0


def _seed_small_digits(engine: Engine) -> None:
    x, y, _ = _digits_split()
    splits = [
        validate_rows(
            features=x[rows].tolist(),
            labels=y[rows].tolist(),
            n_features=64,
            n_classes=10,
            split=split,
        )
        for split, rows in (("train", slice(0, N)), ("test", slice(N, 2 * N)))
    ]
    create_dataset(
        engine,
        name="digits_small",
        feature_names=[f"pixel_{i}" for i in range(64)],
        class_names=[str(d) for d in range(10)],
        initial_rows=splits,
    )


def _lineage(engine: Engine, privacy: dict[str, Any] | None) -> dict[str, Any]:
    lineage: dict[str, Any] = {
        "dataset": "digits_small",
        "rows": {"first_id": 1, "up_to_id": N},
        "config": CONFIG,
    }
    if privacy is not None:
        lineage["privacy"] = privacy
    return lineage


def test_audit_version_sets_a_dp_model_beside_its_epsilon_and_a_non_dp_model(
    sqlite_url: str, tmp_path: Path
) -> None:
    engine = get_engine(sqlite_url)
    _seed_small_digits(engine)
    registry = Registry(engine=engine, root=tmp_path / "registry")
    train = read_rows(engine, "digits_small", split="train")
    noise, steps = 4.0, EPOCHS * (N // 32 + 1)
    ledger = PrivacyLedger(engine)
    ledger.set_budget(
        dataset="digits_small", epsilon=8.0, delta=1e-5, actor="admin", accountant="rdp"
    )
    charge = ledger.reserve(
        dataset="digits_small",
        first_id=1,
        up_to_id=N,
        mechanism=Mechanism(noise, 32 / N, steps),
        accountant="rdp",
        clipping=1.0,
        model="digits_small",
        run="dp-run",
    )
    dp_model = _train(train.x, train.y, noise=noise)
    dp = register_module(
        registry,
        "digits_small",
        module=dp_model,
        spec=SPEC,
        metrics={},
        lineage=_lineage(engine, charge.lineage()),
    )
    ledger.settle(charge.id, steps=steps, version=dp.version)

    epochs_seen: list[tuple[int, int]] = []
    report = audit_version(
        registry=registry,
        engine=engine,
        model="digits_small",
        ref=str(dp.version),
        progress=lambda done, total: epochs_seen.append((done, total)),
    )
    assert report.dp and report.epsilon == charge.epsilon and report.delta == 1e-5
    assert report.attack.members == N
    assert abs(report.attack.loss_auc - 0.5) < 0.1  # the DP model sits close to chance
    assert report.reference is not None and report.reference.source == "trained"
    assert epochs_seen[-1] == (EPOCHS, EPOCHS)  # the reference trained with the same epochs
    assert report.reference.attack.loss_auc > report.attack.loss_auc
    assert report.reference.attack.loss_auc > 0.6
    assert report.bound_auc is not None and report.attack.auc <= report.bound_auc <= 1.0

    # With a non-DP version of the model in the registry, that one is the reference.
    plain = register_module(
        registry,
        "digits_small",
        module=_train(train.x, train.y),
        spec=SPEC,
        metrics={},
        lineage=_lineage(engine, {"dp": False}),
    )
    again = audit_version(
        registry=registry, engine=engine, model="digits_small", ref=str(dp.version)
    )
    assert again.reference is not None
    assert (again.reference.source, again.reference.version) == ("registry", plain.version)
    own = audit_version(registry=registry, engine=engine, model="digits_small", ref="latest")
    assert (own.epsilon, own.reference, own.bound_auc) == (None, None, None)
    assert again.reference.attack == own.attack
    assert own.to_dict()["dp"] is False
