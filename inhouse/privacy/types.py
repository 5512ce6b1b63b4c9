"""What the privacy ledger returns: budgets, charges, non-DP runs, per-data-set reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from inhouse.privacy.accounting import Mechanism
from inhouse.privacy.records import BudgetRecord, ChargeRecord, NonDPRunRecord


@dataclass(frozen=True)
class Budget:
    """An admin-set (epsilon, delta) budget of one data set and its non-DP exemption."""

    dataset: str
    epsilon: float
    delta: float
    accountant: str
    set_by: str | None
    updated_at: datetime
    non_dp_allowed: bool = False
    non_dp_reason: str | None = None
    non_dp_by: str | None = None

    @classmethod
    def _from(cls, record: BudgetRecord) -> Budget | None:
        if record.epsilon is None or record.delta is None:
            return None
        return cls(
            dataset=record.dataset,
            epsilon=record.epsilon,
            delta=record.delta,
            accountant=record.accountant,
            set_by=record.set_by,
            updated_at=record.updated_at,
            non_dp_allowed=record.non_dp_allowed,
            non_dp_reason=record.non_dp_reason,
            non_dp_by=record.non_dp_by,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"updated_at": self.updated_at.isoformat()}


@dataclass(frozen=True)
class Charge:
    """One DP run charged to rows ``first_id..up_to_id`` of a data set.

    ``steps`` is the planned count while ``status`` is ``reserved`` and the actual count once
    settled; ``epsilon`` is this run's own spend at ``delta`` (the budget's) with
    ``accountant``.
    """

    id: int
    dataset: str
    first_id: int
    up_to_id: int
    noise_multiplier: float
    sample_rate: float
    planned_steps: int
    steps: int
    clipping: float
    accountant: str
    delta: float
    epsilon: float
    model: str
    run: str
    version: int | None
    status: str
    created_at: datetime
    settled_at: datetime | None = None
    refunded_by: str | None = None
    refund_reason: str | None = None

    @classmethod
    def _from(cls, record: ChargeRecord) -> Charge:
        return cls(
            id=record.id,
            dataset=record.dataset,
            first_id=int(record.first_id),
            up_to_id=int(record.up_to_id),
            noise_multiplier=record.noise_multiplier,
            sample_rate=record.sample_rate,
            planned_steps=record.planned_steps,
            steps=record.steps,
            clipping=record.clipping,
            accountant=record.accountant,
            delta=record.delta,
            epsilon=record.epsilon,
            model=record.model,
            run=record.run,
            version=record.version,
            status=record.status,
            created_at=record.created_at,
            settled_at=record.settled_at,
            refunded_by=record.refunded_by,
            refund_reason=record.refund_reason,
        )

    @property
    def mechanism(self) -> Mechanism:
        """The run as the accountant sees it (actual steps once settled)."""
        return Mechanism(self.noise_multiplier, self.sample_rate, self.steps)

    def lineage(self) -> dict[str, Any]:
        """The ``lineage["privacy"]`` entry of the model version this run produced."""
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "accountant": self.accountant,
            "noise_multiplier": self.noise_multiplier,
            "clipping": self.clipping,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "dataset": self.dataset,
            "rows": {"first_id": self.first_id, "up_to_id": self.up_to_id},
            "charge_id": self.id,
        }

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat()
        out["settled_at"] = self.settled_at.isoformat() if self.settled_at else None
        return out


@dataclass(frozen=True)
class NonDPRun:
    """A non-DP run on a budgeted data set that an admin's exemption let through."""

    id: int
    dataset: str
    model: str
    run: str
    allowed_by: str | None
    reason: str | None
    created_at: datetime

    @classmethod
    def _from(cls, record: NonDPRunRecord) -> NonDPRun:
        return cls(
            id=record.id,
            dataset=record.dataset,
            model=record.model,
            run=record.run,
            allowed_by=record.allowed_by,
            reason=record.reason,
            created_at=record.created_at,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class DatasetReport:
    """Budget, spend and what is left of one data set, with every charge and non-DP run.

    ``spent`` is composed at the budget's delta with its accountant (without a budget: at
    the newest charge's delta with its accountant). ``remaining`` is
    ``budget - spent`` (negative only if settled runs overran their reservation), None
    without a budget.
    """

    dataset: str
    budget: Budget | None
    spent: float
    remaining: float | None
    charges: list[Charge] = field(default_factory=list)
    non_dp_runs: list[NonDPRun] = field(default_factory=list)

    def by_version(self) -> dict[str, list[Charge]]:
        """Counted charges grouped by ``model vN`` (``model (run ...)`` while unregistered)."""
        groups: dict[str, list[Charge]] = {}
        for charge in self.charges:
            if charge.status == "refunded":
                continue
            key = (
                f"{charge.model} v{charge.version}"
                if charge.version is not None
                else f"{charge.model} (run {charge.run})"
            )
            groups.setdefault(key, []).append(charge)
        return groups

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "budget": self.budget.to_dict() if self.budget else None,
            "spent_epsilon": self.spent,
            "remaining_epsilon": self.remaining,
            "charges": [c.to_dict() for c in self.charges],
            "non_dp_runs": [r.to_dict() for r in self.non_dp_runs],
        }
