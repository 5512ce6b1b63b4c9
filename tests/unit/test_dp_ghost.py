"""Ghost clipping (the tabular kind's DP-SGD) computes the same clipped gradients as Opacus's
per-sample hooks, and the recipe's optimiser and cosine schedule resume where they were."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from inhouse.training.dp import DPPlan, make_private
from inhouse.training.recipe import LearningRateSchedule, build_optimizer


def _data(n: int = 300) -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 12, generator=gen) * 4  # large inputs: most rows get clipped
    return TensorDataset(x, (x[:, 0] > 2).long())


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 3))


def _one_step_gradient(*, ghost: bool, clip: float) -> list[torch.Tensor]:
    """The gradient Opacus hands the optimizer after one noiseless step."""
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    plan = DPPlan(
        noise_multiplier=1e-9, batch_size=100, sample_rate=1 / 3, steps_per_epoch=3,
        epochs=1, max_grad_norm=clip, delta=1e-5, accountant="prv",
    )  # fmt: skip
    private = make_private(
        model=model, optimizer=optimizer, dataset=_data(), plan=plan, distributed=False,
        ghost=ghost,
    )  # fmt: skip
    assert (private.loss_fn is not None) == ghost
    loss_fn = private.loss_fn or nn.CrossEntropyLoss()
    torch.manual_seed(1)  # the same Poisson batch for both
    x, y = next(iter(private.loader))
    private.optimizer.zero_grad()
    loss_fn(private.model(x), y).backward()
    private.optimizer.pre_step()  # clip (hooks), add the (negligible) noise, scale
    return [p.grad.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("clip", [0.05, 1.0])
def test_ghost_clipping_matches_per_sample_hooks(clip: float) -> None:
    ghost = _one_step_gradient(ghost=True, clip=clip)
    hooks = _one_step_gradient(ghost=False, clip=clip)
    for a, b in zip(ghost, hooks, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)
    assert any(float(g.abs().sum()) > 0 for g in ghost)


def test_cosine_schedule_resumes_on_the_same_curve() -> None:
    model = nn.Linear(2, 2)
    optimizer = build_optimizer(
        model.parameters(), name="sgd", lr=0.5, momentum=0.9, weight_decay=1e-4
    )
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["nesterov"]
    assert optimizer.defaults["weight_decay"] == 1e-4
    schedule = LearningRateSchedule(optimizer, name="cosine", lr=0.5, steps_per_epoch=10, epochs=4)
    schedule.start_epoch(2)  # a run resumed at epoch 2: halfway
    schedule()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.25)
    assert schedule.rate(0) == pytest.approx(0.5) and schedule.rate(40) == pytest.approx(0.0)
    assert schedule.rate(10) == pytest.approx(0.25 * (1 + math.cos(math.pi / 4)))
    constant = LearningRateSchedule(
        optimizer, name="constant", lr=0.5, steps_per_epoch=10, epochs=4
    )
    assert constant.rate(39) == 0.5
    assert isinstance(build_optimizer(model.parameters(), name="adam", lr=1e-3, momentum=0.9),
                      torch.optim.Adam)  # fmt: skip
