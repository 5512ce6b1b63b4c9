"""DP-SGD plumbing without Ray: planning, Opacus wrapping, accountant resume, public bounds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant
from torch import nn
from torch.utils.data import TensorDataset

from inhouse.data.bounds import public_bounds
from inhouse.errors import InvalidInputError
from inhouse.kinds import build_model
from inhouse.models import MLPSpec
from inhouse.training import train_one_epoch
from inhouse.training.dp import make_private, plan_dp, validate_or_fix


def _plan(**overrides: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = dict(
        train_rows=1000, batch_size=100, epochs=4, max_grad_norm=1.0, delta=1e-5, accountant="prv"
    )
    args.update(overrides)
    return plan_dp(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_noise_for_target_epsilon_spends_that_epsilon(accountant: str) -> None:
    plan = _plan(target_epsilon=3.0, accountant=accountant)
    assert plan.sample_rate == pytest.approx(0.1)
    assert plan.steps == 40
    independent = PRVAccountant() if accountant == "prv" else RDPAccountant()
    independent.history = [(plan.noise_multiplier, plan.sample_rate, plan.steps)]
    assert independent.get_epsilon(delta=1e-5) == pytest.approx(3.0, abs=0.05)


def test_plan_needs_exactly_one_noise_source() -> None:
    with pytest.raises(InvalidInputError, match="exactly one"):
        _plan()
    with pytest.raises(InvalidInputError, match="exactly one"):
        _plan(noise_multiplier=1.0, target_epsilon=3.0)
    with pytest.raises(InvalidInputError, match="accountant"):
        _plan(noise_multiplier=1.0, accountant="gdp-typo")


def test_batchnorm_is_fixed_and_problems_are_reported() -> None:
    model, fixed = validate_or_fix(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)))
    assert fixed and not any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    same, none = validate_or_fix(nn.Sequential(nn.Linear(4, 2)))
    assert none == []


def _digits_like(n: int = 256) -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 8, generator=gen)
    return TensorDataset(x, (x[:, 0] > 0.5).long())


def test_private_training_learns_and_its_accountant_resumes() -> None:
    data = _digits_like()
    plan = _plan(train_rows=len(data), batch_size=64, epochs=3, noise_multiplier=0.8)
    model = build_model(MLPSpec(input_dim=8, hidden=[16], num_classes=2).model_dump())
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    private = make_private(model=model, optimizer=opt, dataset=data, plan=plan, distributed=False)
    for _ in range(plan.epochs):
        train_one_epoch(private.model, private.loader, private.optimizer)
    assert private.steps() == plan.steps
    spent = private.epsilon(plan.delta)
    independent = PRVAccountant()
    independent.history = [(plan.noise_multiplier, plan.sample_rate, plan.steps)]
    assert spent == pytest.approx(independent.get_epsilon(delta=plan.delta), rel=1e-6)
    state = json.loads(json.dumps(private.accountant_state()))  # as the checkpoint holds it
    fresh = build_model(MLPSpec(input_dim=8, hidden=[16], num_classes=2).model_dump())
    resumed = make_private(
        model=fresh,
        optimizer=torch.optim.Adam(fresh.parameters()),
        dataset=data,
        plan=plan,
        distributed=False,
        accountant_state=state,
    )
    assert resumed.epsilon(plan.delta) == pytest.approx(spent)
    train_one_epoch(resumed.model, resumed.loader, resumed.optimizer)
    assert resumed.steps() == plan.steps + plan.steps_per_epoch
    assert resumed.epsilon(plan.delta) > spent


def test_builtin_bounds_cover_every_feature() -> None:
    from sklearn.datasets import load_breast_cancer

    names = [str(n).replace(" ", "_") for n in load_breast_cancer().feature_names]
    lo, hi, source = public_bounds(dataset="breast_cancer", feature_names=names)
    assert len(lo) == 30 and bool((hi > lo).all()) and "published" in source
    lo, hi, _ = public_bounds(dataset="digits", feature_names=["pixel_0_0"])
    assert (lo.item(), hi.item()) == (0.0, 16.0)


def test_bounds_are_required_and_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="--dp-bounds"):
        public_bounds(dataset="mine", feature_names=["a"])
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"a": [2, 1]}))
    with pytest.raises(InvalidInputError, match="lo <= hi"):
        public_bounds(dataset="mine", feature_names=["a"], bounds_file=bad)
    good = tmp_path / "g.json"
    good.write_text(json.dumps({"a": [0, 10]}))
    with pytest.raises(InvalidInputError, match="missing"):
        public_bounds(dataset="mine", feature_names=["a", "b"], bounds_file=good)
    lo, hi, _ = public_bounds(dataset="mine", feature_names=["a"], bounds_file=good)
    model = build_model(MLPSpec(input_dim=1, hidden=[], num_classes=2).model_dump())
    model[0].set_bounds(lo, hi)  # type: ignore[operator]
    assert model[0](torch.tensor([[0.0], [10.0]])).flatten().tolist() == [-1.0, 1.0]


@pytest.mark.gpu
def test_private_training_runs_on_cuda() -> None:
    data = _digits_like()
    plan = _plan(train_rows=len(data), batch_size=64, epochs=1, noise_multiplier=1.0)
    model = build_model(MLPSpec(input_dim=8, hidden=[16], num_classes=2).model_dump()).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    private = make_private(model=model, optimizer=opt, dataset=data, plan=plan, distributed=False)
    train_one_epoch(private.model, private.loader, private.optimizer)
    assert private.steps() == plan.steps and private.epsilon(plan.delta) > 0
    assert next(model.parameters()).is_cuda
