"""Non-DP training on a budgeted data set: the admin's exemption and the record of each run.

A data set with a privacy budget refuses non-DP training (its models would carry no
guarantee) unless an admin allowed it explicitly, with a reason; every run the exemption
lets through is recorded with who allowed it and why.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from inhouse.db import utcnow
from inhouse.errors import PermissionDeniedError
from inhouse.privacy.records import BudgetRecord, NonDPRunRecord
from inhouse.privacy.state import State, refuse_if_current, retrying, write_if_unchanged


def set_exemption(
    engine: Engine, dataset: str, *, allowed: bool, actor: str, reason: str | None
) -> None:
    """Allow (with ``reason``) or withdraw non-DP training on ``dataset``."""

    def write(_session: Session, record: BudgetRecord) -> None:
        record.non_dp_allowed, record.non_dp_reason = allowed, reason
        record.non_dp_by, record.non_dp_at = actor, utcnow()

    retrying(engine, dataset, lambda state: write_if_unchanged(engine, state, write))


def admit_non_dp(engine: Engine, dataset: str, *, model: str, run: str) -> None:
    """Record a non-DP run if the data set has no budget or an exemption; refuse it otherwise.

    Raises:
        PermissionDeniedError: budgeted and not exempted; names the command that exempts.
    """

    def write(session: Session, record: BudgetRecord) -> None:
        session.add(
            NonDPRunRecord(
                dataset=dataset,
                model=model,
                run=run,
                allowed_by=record.non_dp_by,
                reason=record.non_dp_reason,
            )
        )

    def attempt(state: State) -> None:
        budget = state.budget
        if budget is None:
            return
        if not state.non_dp_allowed:
            raise refuse_if_current(
                engine,
                state,
                PermissionDeniedError(
                    f"data set {dataset!r} has a privacy budget (ε={budget.epsilon:g}, "
                    f"δ={budget.delta:g}): non-DP training is refused; train with DP, or an "
                    f"admin allows it with `inhouse privacy allow-non-dp {dataset} --reason ...`"
                ),
            )
        write_if_unchanged(engine, state, write)

    retrying(engine, dataset, attempt)
