"""The privacy ledger: per-data-set (epsilon, delta) budgets and the DP runs charged to them.

A DP run first :meth:`PrivacyLedger.reserve`\\ s its planned mechanism: the ledger composes
the data set's spend with the run added (:func:`~inhouse.privacy.accounting.dataset_epsilon`:
runs over overlapping rows compose through the accountant, disjoint rows in parallel, the
data set's spend is the max over row segments) and refuses with
:class:`~inhouse.errors.BudgetExceededError` before writing anything if that exceeds the
budget; the check and the insert are serialised per data set (:mod:`inhouse.privacy.state`).
When the run ends it :meth:`~PrivacyLedger.settle`\\ s the charge with the steps it actually
ran and the version it registered. Reserved, committed and failed charges count; an admin may
:meth:`~PrivacyLedger.refund` a reserved or failed one. Non-DP training on a budgeted data
set is refused unless an admin allowed it (:meth:`~PrivacyLedger.allow_non_dp`), and each
such run is recorded.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from inhouse.data.store import get_dataset
from inhouse.data.table import validate_name
from inhouse.db import session_scope, utcnow
from inhouse.errors import BudgetExceededError, ConflictError
from inhouse.privacy.accounting import (
    DEFAULT_ACCOUNTANT,
    Mechanism,
    dataset_epsilon,
    validate_accountant,
    validate_budget,
)
from inhouse.privacy.charges import check_text, refund_charge, reserve_charge, settle_charge
from inhouse.privacy.exemptions import admit_non_dp, set_exemption
from inhouse.privacy.reading import dataset_report, known_datasets, load_charge
from inhouse.privacy.records import COMMITTED, BudgetRecord
from inhouse.privacy.state import State, refuse_if_current, retrying, write_if_unchanged
from inhouse.privacy.types import Budget, Charge, DatasetReport


class PrivacyLedger:
    """Budgets, charges and non-DP exemptions in the metadata database (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- budgets and exemptions ----------------------------------------------------------

    def set_budget(
        self,
        *,
        dataset: str,
        epsilon: float,
        delta: float,
        actor: str,
        accountant: str = DEFAULT_ACCOUNTANT,
    ) -> Budget:
        """Set (or change) a data set's budget; it may not go below what is already spent.

        Raises:
            InvalidInputError: epsilon <= 0, delta outside (0, 1), unknown accountant.
            DatasetNotFoundError: no such data set.
            BudgetExceededError: the data set already spent more than ``epsilon`` at ``delta``.
        """
        eps, dlt = validate_budget(epsilon=epsilon, delta=delta)
        validate_accountant(accountant)
        check_text(actor, what="actor", limit=128)
        get_dataset(self.engine, dataset)

        def write(session: Session, record: BudgetRecord) -> Budget | None:
            record.epsilon, record.delta, record.accountant = eps, dlt, accountant
            record.set_by, record.updated_at = actor, utcnow()
            session.flush()
            return Budget._from(record)

        def attempt(state: State) -> Budget | None:
            spent = dataset_epsilon(state.spans, delta=dlt, accountant=accountant)
            if spent > eps:
                raise refuse_if_current(
                    self.engine,
                    state,
                    BudgetExceededError(
                        f"data set {dataset!r} has already spent ε={spent:.2f} at δ={dlt:g}: "
                        f"a budget can be lowered only to ε >= {spent:.2f}"
                    ),
                )
            return write_if_unchanged(self.engine, state, write)

        budget = retrying(self.engine, dataset, attempt)
        if budget is None:  # unreachable: both were just set
            raise ConflictError(f"budget of {dataset!r} was not stored; retry")
        return budget

    def budget(self, dataset: str) -> Budget | None:
        """The data set's budget, or None if no admin set one."""
        with session_scope(self.engine) as session:
            record = session.get(BudgetRecord, validate_name(dataset))
            return Budget._from(record) if record is not None else None

    def allow_non_dp(self, *, dataset: str, actor: str, reason: str) -> None:
        """The admin's explicit exemption: non-DP training on ``dataset`` is let through (and
        each such run recorded) until :meth:`revoke_non_dp`."""
        check_text(actor, what="actor", limit=128)
        check_text(reason, what="reason", limit=2000)
        get_dataset(self.engine, dataset)
        set_exemption(self.engine, dataset, allowed=True, actor=actor, reason=reason)

    def revoke_non_dp(self, *, dataset: str, actor: str) -> None:
        """Withdraw the non-DP exemption of ``dataset``."""
        check_text(actor, what="actor", limit=128)
        set_exemption(self.engine, validate_name(dataset), allowed=False, actor=actor, reason=None)

    def check_non_dp(self, *, dataset: str, model: str, run: str) -> None:
        """Let a non-DP run start, or refuse it (PermissionDeniedError) on a budgeted data set
        without the admin's exemption; with the exemption the run is recorded."""
        validate_name(dataset)
        check_text(model, what="model", limit=64)
        check_text(run, what="run", limit=256)
        if self.budget(dataset) is not None:
            admit_non_dp(self.engine, dataset, model=model, run=run)

    # --- charges -------------------------------------------------------------------------

    def reserve(
        self,
        *,
        dataset: str,
        first_id: int,
        up_to_id: int,
        mechanism: Mechanism,
        accountant: str,
        clipping: float,
        model: str,
        run: str,
        delta: float | None = None,
    ) -> Charge:
        """Charge a planned DP run to rows ``first_id..up_to_id``, or refuse it.

        See :func:`~inhouse.privacy.charges.reserve_charge`.

        Raises:
            BudgetExceededError: the data set's composed spend with this run would exceed its
                budget; nothing is written.
            InvalidInputError: invalid mechanism, rows, clipping or accountant.
        """
        return reserve_charge(
            self.engine,
            dataset=dataset,
            first_id=first_id,
            up_to_id=up_to_id,
            mechanism=mechanism,
            accountant=accountant,
            clipping=clipping,
            model=model,
            run=run,
            delta=delta,
        )

    def settle(
        self, charge_id: int, *, steps: int, version: int | None, status: str = COMMITTED
    ) -> Charge:
        """Record the steps a reserved run actually ran and the version it registered
        (``status`` committed or failed; see :func:`~inhouse.privacy.charges.settle_charge`)."""
        return settle_charge(self.engine, charge_id, steps=steps, version=version, status=status)

    def refund(self, charge_id: int, *, actor: str, reason: str) -> Charge:
        """An admin's refund of a reserved or failed charge (it stops counting).

        Raises:
            ConflictError: the charge is committed (its version exists) or already refunded.
        """
        return refund_charge(self.engine, charge_id, actor=actor, reason=reason)

    def charge(self, charge_id: int) -> Charge:
        """One charge by id; raises NotFoundError."""
        return load_charge(self.engine, charge_id)

    # --- reading -------------------------------------------------------------------------

    def spent(self, dataset: str) -> float:
        """The data set's composed epsilon (see :class:`DatasetReport` for the delta used)."""
        return dataset_report(self.engine, validate_name(dataset)).spent

    def report(self, dataset: str | None = None) -> list[DatasetReport]:
        """Budget, spend, remaining, charges and non-DP runs of one data set, or of every data
        set (in the catalog or in the ledger)."""
        if dataset is not None:
            return [dataset_report(self.engine, validate_name(dataset))]
        return [dataset_report(self.engine, name) for name in known_datasets(self.engine)]
