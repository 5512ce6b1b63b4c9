"""Read-only views of the privacy ledger: one data set's report, the data sets it knows."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from inhouse.data.store import list_datasets
from inhouse.db import session_scope
from inhouse.errors import NotFoundError
from inhouse.privacy.accounting import DEFAULT_ACCOUNTANT, dataset_epsilon
from inhouse.privacy.records import BudgetRecord, ChargeRecord, NonDPRunRecord
from inhouse.privacy.state import counted_spans
from inhouse.privacy.types import Budget, Charge, DatasetReport, NonDPRun


def charge_record(session: Session, charge_id: int) -> ChargeRecord:
    """The row of one charge; raises NotFoundError."""
    record = session.get(ChargeRecord, int(charge_id))
    if record is None:
        raise NotFoundError(f"privacy charge {charge_id} does not exist")
    return record


def load_charge(engine: Engine, charge_id: int) -> Charge:
    """One charge by id; raises NotFoundError."""
    with session_scope(engine) as session:
        return Charge._from(charge_record(session, charge_id))


def known_datasets(engine: Engine) -> list[str]:
    """Every data set in the catalog or in the ledger, sorted."""
    names = set(list_datasets(engine))
    with session_scope(engine) as session:
        names |= set(session.scalars(select(BudgetRecord.dataset)))
        names |= set(session.scalars(select(ChargeRecord.dataset).distinct()))
    return sorted(names)


def dataset_report(engine: Engine, dataset: str) -> DatasetReport:
    """Budget, composed spend, what is left, every charge and non-DP run of ``dataset``.

    The spend is composed at the budget's delta with its accountant; without a budget, as
    the newest charge was accounted.
    """
    with session_scope(engine) as session:
        record = session.get(BudgetRecord, dataset)
        budget = Budget._from(record) if record is not None else None
        charges = session.scalars(
            select(ChargeRecord).where(ChargeRecord.dataset == dataset).order_by(ChargeRecord.id)
        ).all()
        runs = session.scalars(
            select(NonDPRunRecord)
            .where(NonDPRunRecord.dataset == dataset)
            .order_by(NonDPRunRecord.id)
        ).all()
        spans = counted_spans(session, dataset)
        listed = [Charge._from(c) for c in charges]
        non_dp = [NonDPRun._from(r) for r in runs]
    if budget is not None:
        delta, accountant = budget.delta, budget.accountant
    else:
        delta = listed[-1].delta if listed else 1e-5
        accountant = listed[-1].accountant if listed else DEFAULT_ACCOUNTANT
    spent = dataset_epsilon(spans, delta=delta, accountant=accountant)
    remaining = budget.epsilon - spent if budget is not None else None
    return DatasetReport(dataset, budget, spent, remaining, listed, non_dp)
