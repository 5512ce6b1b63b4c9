"""DP-SGD for the training loop: Opacus with Poisson sampling, across DDP workers.

The driver plans the run (sample rate, steps, noise for a target epsilon) so the privacy
ledger can refuse it before any row is read; every worker then wraps its model with
``DPDDP`` and ``PrivacyEngine.make_private``. Opacus replaces the data loader with a
distributed Poisson sampler (no ``DistributedSampler`` on top), clips per-sample gradients,
adds noise once per step across workers and counts the steps in its accountant, whose
history goes into every checkpoint so a resumed run keeps the epsilon it had spent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from inhouse.errors import InvalidInputError

ACCOUNTANTS = ("prv", "rdp")


@dataclass(frozen=True)
class DPPlan:
    """What one DP run will do: the mechanism the ledger charges before it starts."""

    noise_multiplier: float
    batch_size: int  # expected rows per step across all workers
    sample_rate: float
    steps_per_epoch: int
    epochs: int
    max_grad_norm: float
    delta: float
    accountant: str

    @property
    def steps(self) -> int:
        return self.steps_per_epoch * self.epochs


def plan_dp(
    *,
    train_rows: int,
    batch_size: int,
    epochs: int,
    max_grad_norm: float,
    delta: float,
    accountant: str,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
) -> DPPlan:
    """Sample rate and steps as Opacus's Poisson loader will run them; noise from a target.

    ``batch_size`` is the expected batch across all workers (Poisson: ``q = 1/ceil(N/B)``).
    """
    if accountant not in ACCOUNTANTS:
        raise InvalidInputError(f"accountant must be one of {', '.join(ACCOUNTANTS)}")
    if (noise_multiplier is None) == (target_epsilon is None):
        raise InvalidInputError("DP needs exactly one of --noise-multiplier or --target-epsilon")
    if train_rows < 2:
        raise InvalidInputError("DP training needs at least 2 training rows")
    batch_size = min(batch_size, train_rows)
    sample_rate = 1.0 / math.ceil(train_rows / batch_size)  # as Opacus derives it from the loader
    steps_per_epoch = int(1 / sample_rate)
    if target_epsilon is not None:
        from opacus.accountants.utils import get_noise_multiplier

        noise_multiplier = get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps_per_epoch * epochs,
            accountant=accountant,
        )
    if noise_multiplier is None or noise_multiplier <= 0:
        raise InvalidInputError("the noise multiplier must be > 0")
    return DPPlan(
        noise_multiplier=float(noise_multiplier),
        batch_size=batch_size,
        sample_rate=sample_rate,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        max_grad_norm=max_grad_norm,
        delta=delta,
        accountant=accountant,
    )


def validate_or_fix(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """Fix layers Opacus cannot train privately (e.g. BatchNorm → GroupNorm) or refuse.

    Returns the (possibly replaced) model and the problems that were fixed.
    """
    from opacus.validators import ModuleValidator

    problems = [str(error) for error in ModuleValidator.validate(model, strict=False)]
    if not problems:
        return model, []
    fixed = ModuleValidator.fix(model)
    remaining = [str(error) for error in ModuleValidator.validate(fixed, strict=False)]
    if remaining:
        raise InvalidInputError("Opacus cannot train this model with DP: " + "; ".join(remaining))
    return fixed, problems


@dataclass
class PrivateTraining:
    """The wrapped model, optimizer and Poisson loader of one worker, and its accountant."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loader: DataLoader[tuple[torch.Tensor, ...]]
    engine: Any  # opacus.PrivacyEngine
    loss_fn: Any = None  # ghost clipping: the cross-entropy whose backward() clips (else None)

    def epsilon(self, delta: float) -> float:
        """Epsilon spent so far by this run (every resumed step included)."""
        if not self.engine.accountant.history:
            return 0.0
        return float(self.engine.accountant.get_epsilon(delta=delta))

    def steps(self) -> int:
        return sum(int(steps) for _, _, steps in self.engine.accountant.history)

    def accountant_state(self) -> dict[str, Any]:
        """JSON-safe accountant history for the checkpoint."""
        history = [[float(n), float(q), int(s)] for n, q, s in self.engine.accountant.history]
        return {"mechanism": self.engine.accountant.mechanism(), "history": history}


def make_private(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    dataset: TensorDataset,
    plan: DPPlan,
    distributed: bool,
    accountant_state: dict[str, Any] | None = None,
    ghost: bool = False,
) -> PrivateTraining:
    """Wrap one worker's model/optimizer for DP-SGD; restores a checkpoint's accountant.

    The loader is built over the full training set with the planned batch size; Opacus turns
    it into a (distributed) Poisson sampler, so each worker draws from its shard at rate q.
    The noise is never seeded: predictable noise would void the guarantee.

    ``ghost``: Opacus's ghost clipping. Per-sample gradient norms come from each layer's
    activations and output gradients (``|a|·|g|`` for a Linear layer) without materialising
    the per-sample gradients, then a second backward pass sums the clipped ones; layers
    without a norm rule fall back to per-sample gradients. Same mechanism and accounting,
    ~15x faster than hooks on the MNIST MLP. Train with :attr:`PrivateTraining.loss_fn`.
    """
    from opacus import PrivacyEngine
    from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP

    engine = PrivacyEngine(accountant=plan.accountant, secure_mode=False)
    loader: DataLoader[tuple[torch.Tensor, ...]] = DataLoader(dataset, batch_size=plan.batch_size)
    if abs(1 / len(loader) - plan.sample_rate) > 1e-12:
        raise InvalidInputError("the training rows changed since the run was planned")
    wrapped = DPDDP(model) if distributed else model
    common: dict[str, Any] = {
        "module": wrapped,
        "optimizer": optimizer,
        "data_loader": loader,
        "noise_multiplier": plan.noise_multiplier,
        "max_grad_norm": plan.max_grad_norm,
        "poisson_sampling": True,
    }
    loss_fn = None
    if ghost:
        private_model, private_optimizer, loss_fn, private_loader = engine.make_private(
            **common, criterion=nn.CrossEntropyLoss(), grad_sample_mode="ghost"
        )
    else:
        private_model, private_optimizer, private_loader = engine.make_private(**common)
    if accountant_state and accountant_state.get("history"):
        engine.accountant.history = [
            (float(n), float(q), int(s)) for n, q, s in accountant_state["history"]
        ]
    return PrivateTraining(private_model, private_optimizer, private_loader, engine, loss_fn)


def dp_lineage(plan: DPPlan, *, epsilon: float, steps: int, bounds_source: str) -> dict[str, Any]:
    """The privacy facts a version carries (the ledger adds its charge id)."""
    return {
        "epsilon": epsilon,
        "delta": plan.delta,
        "accountant": plan.accountant,
        "noise_multiplier": plan.noise_multiplier,
        "clipping": plan.max_grad_norm,
        "sample_rate": plan.sample_rate,
        "steps": steps,
        "feature_scaling": bounds_source,
    }
