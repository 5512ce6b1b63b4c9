"""The driver's side of a training run's privacy: plan, charge the ledger, record lineage.

Before any worker reads a row, a DP run is planned (noise, sample rate, steps) and its
spend reserved in the privacy ledger, which refuses a run that would overspend the data
set's budget; a non-DP run on a budgeted data set is refused unless an admin exempted it.
After training, the charge is settled with the steps the run ran, by the driver's own count
(the plan, or more if the workers reported more), and the version it made: never with a count
read back from a checkpoint file, which whoever can write the run's storage could edit.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine

from inhouse.config import TrainSettings
from inhouse.data import DatasetInfo
from inhouse.data.bounds import public_bounds
from inhouse.errors import InvalidInputError
from inhouse.training.dp import DPPlan, dp_lineage, plan_dp


@dataclass(frozen=True)
class WorkerPrivacy:
    """A run's privacy as its workers receive it: the DP plan (None: not DP) and, for a DP
    tabular run, the public feature bounds to scale by."""

    plan: DPPlan | None
    scaling: tuple[list[float], list[float]] | None = None


@dataclass
class PrivateRun:
    """One run's privacy state on the driver (``plan`` is None for a non-DP run)."""

    plan: DPPlan | None
    charge_id: int | None = None
    bounds: tuple[list[float], list[float]] | None = None
    bounds_source: str = ""

    def worker_config(self) -> WorkerPrivacy:
        """What the workers need: the plan and the public feature scaling."""
        if self.plan is None:
            return WorkerPrivacy(plan=None, scaling=None)
        return WorkerPrivacy(plan=self.plan, scaling=self.bounds)

    def charged_steps(self, reported_steps: int | None) -> int:
        """The steps a finished DP run is charged, by the driver's own count.

        A run that finished ran every planned epoch, and Opacus's Poisson loader runs exactly
        ``steps_per_epoch`` steps an epoch, so the plan is the floor; ``reported_steps`` (what
        the workers reported to the driver through Ray Train's metrics, or what an in-process
        run counted) can only raise it. Never less than what was actually run.
        """
        if self.plan is None:
            return 0
        try:
            reported = operator.index(reported_steps or 0)  # int, numpy int; not a float
        except TypeError:
            reported = -1
        if reported < 0:
            raise InvalidInputError(
                f"reported steps must be an integer >= 0, not {reported_steps!r}"
            )
        return max(self.plan.steps, reported)

    def lineage(self, *, reported_steps: int | None) -> dict[str, Any]:
        """The version's privacy lineage: the charged steps (:meth:`charged_steps`) and the
        epsilon they spend, computed as the ledger computes the charge."""
        if self.plan is None:
            return {"dp": False}
        from inhouse.privacy import Mechanism, epsilon_of

        plan, steps = self.plan, self.charged_steps(reported_steps)
        epsilon = epsilon_of(
            [Mechanism(plan.noise_multiplier, plan.sample_rate, steps)],
            delta=plan.delta,
            accountant=plan.accountant,
        )
        return {
            "dp": True,
            "charge_id": self.charge_id,
            **dp_lineage(plan, epsilon=epsilon, steps=steps, bounds_source=self.bounds_source),
        }

    def settle(self, engine: Engine, *, reported_steps: int | None, version: int | None) -> None:
        """Charge the run's steps (:meth:`charged_steps`), and the version they made, to the
        ledger."""
        if self.plan is None or self.charge_id is None:
            return
        from inhouse.privacy import PrivacyLedger

        steps = self.charged_steps(reported_steps)
        PrivacyLedger(engine).settle(self.charge_id, steps=steps, version=version)

    def fail(self, engine: Engine, *, steps: int | None = None) -> None:
        """A run that died: its planned spend stays charged (its checkpoints exist), unless
        it failed before its first step (``steps=0``: no row was touched)."""
        if self.plan is None or self.charge_id is None:
            return
        from inhouse.privacy import PrivacyLedger

        spent = self.plan.steps if steps is None else steps
        PrivacyLedger(engine).settle(self.charge_id, steps=spent, version=None, status="failed")


class DPRequest(Protocol):
    """The DP settings of a run (``TrainSettings`` and ``TextTrainOptions`` both have them)."""

    # read-only: a settings model's Literal or narrower field types still match
    @property
    def dataset(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def epochs(self) -> int: ...
    @property
    def max_grad_norm(self) -> float: ...
    @property
    def target_delta(self) -> float: ...
    @property
    def accountant(self) -> str: ...
    @property
    def noise_multiplier(self) -> float | None: ...
    @property
    def target_epsilon(self) -> float | None: ...


def reserve(
    *,
    engine: Engine,
    request: DPRequest,
    info: DatasetInfo,
    run_name: str,
    train_rows: int,
    batch_size: int,
) -> tuple[DPPlan, int]:
    """Plan a DP run over ``train_rows`` rows (``batch_size`` expected across all workers) and
    reserve its spend on the data set's rows; ``(plan, charge id)``. Refuses over budget."""
    from inhouse.privacy import Mechanism, PrivacyLedger

    if info.first_id is None or info.last_id is None:
        raise InvalidInputError(f"data set {request.dataset!r} has no rows to train on")
    ledger = PrivacyLedger(engine)
    budget = ledger.budget(request.dataset)
    delta = budget.delta if budget is not None else request.target_delta  # the budget's
    plan = plan_dp(
        train_rows=train_rows,
        batch_size=batch_size,
        epochs=request.epochs,
        max_grad_norm=request.max_grad_norm,
        delta=delta,
        accountant=request.accountant,
        noise_multiplier=request.noise_multiplier,
        target_epsilon=request.target_epsilon,
    )
    charge = ledger.reserve(
        dataset=request.dataset,
        first_id=info.first_id,
        up_to_id=info.last_id,
        mechanism=Mechanism(
            noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate, steps=plan.steps
        ),
        accountant=plan.accountant,
        clipping=plan.max_grad_norm,
        model=request.model,
        run=run_name,
        delta=delta,
    )
    return plan, charge.id


def prepare(
    *, engine: Engine, cfg: TrainSettings, info: DatasetInfo, run_name: str, num_workers: int
) -> PrivateRun:
    """Plan and reserve a DP run, or check that a non-DP run may touch this data set."""
    from inhouse.privacy import PrivacyLedger

    if not cfg.dp:
        PrivacyLedger(engine).check_non_dp(dataset=cfg.dataset, model=cfg.model, run=run_name)
        return PrivateRun(plan=None)
    if info.first_id is None or info.last_id is None:
        raise InvalidInputError(f"data set {cfg.dataset!r} has no rows to train on")
    lo, hi, source = public_bounds(
        dataset=cfg.dataset, feature_names=info.feature_names, bounds_file=cfg.dp_bounds
    )
    plan, charge_id = reserve(
        engine=engine,
        request=cfg,
        info=info,
        run_name=run_name,
        train_rows=info.train_rows,
        batch_size=cfg.batch_size * num_workers,
    )
    return PrivateRun(
        plan=plan,
        charge_id=charge_id,
        bounds=(lo.tolist(), hi.tolist()),
        bounds_source=source,
    )
