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

import math

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from inhouse.data.store import get_dataset
from inhouse.data.table import validate_name
from inhouse.db import session_scope, utcnow
from inhouse.errors import (
    BudgetExceededError,
    ConflictError,
    InvalidInputError,
)
from inhouse.privacy.accounting import (
    DEFAULT_ACCOUNTANT,
    Mechanism,
    Span,
    dataset_epsilon,
    epsilon_of,
    validate_accountant,
    validate_budget,
)
from inhouse.privacy.exemptions import admit_non_dp, set_exemption
from inhouse.privacy.reading import charge_record, dataset_report, known_datasets, load_charge
from inhouse.privacy.records import (
    COMMITTED,
    FAILED,
    REFUNDED,
    RESERVED,
    BudgetRecord,
    ChargeRecord,
)
from inhouse.privacy.state import (
    State,
    refuse_if_current,
    retrying,
    write_if_unchanged,
)
from inhouse.privacy.types import Budget, Charge, DatasetReport


def _text(value: str, *, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidInputError(f"{what} must be 1-{limit} characters, got {value!r}")
    return value


def _still_reserved(
    engine: Engine,
    dataset: str,
    *,
    model: str,
    run: str,
    span: Span,
    clipping: float,
    accountant: str,
) -> Charge | None:
    """The reserved, unsettled charge of ``run`` with the same rows and mechanism, if any."""
    mechanism = span.mechanism
    with session_scope(engine) as session:
        records = session.scalars(
            select(ChargeRecord)
            .where(
                ChargeRecord.dataset == dataset,
                ChargeRecord.model == model,
                ChargeRecord.run == run,
                ChargeRecord.status == RESERVED,
                ChargeRecord.first_id == span.first_id,
                ChargeRecord.up_to_id == span.up_to_id,
                ChargeRecord.planned_steps == mechanism.steps,
                ChargeRecord.accountant == accountant,
            )
            .order_by(ChargeRecord.id)
        ).all()
        for record in records:
            if (
                math.isclose(record.noise_multiplier, float(mechanism.noise_multiplier))
                and math.isclose(record.sample_rate, float(mechanism.sample_rate))
                and math.isclose(record.clipping, float(clipping))
            ):
                return Charge._from(record)
    return None


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
        _text(actor, what="actor", limit=128)
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
        _text(actor, what="actor", limit=128)
        _text(reason, what="reason", limit=2000)
        get_dataset(self.engine, dataset)
        set_exemption(self.engine, dataset, allowed=True, actor=actor, reason=reason)

    def revoke_non_dp(self, *, dataset: str, actor: str) -> None:
        """Withdraw the non-DP exemption of ``dataset``."""
        _text(actor, what="actor", limit=128)
        set_exemption(self.engine, validate_name(dataset), allowed=False, actor=actor, reason=None)

    def check_non_dp(self, *, dataset: str, model: str, run: str) -> None:
        """Let a non-DP run start, or refuse it (PermissionDeniedError) on a budgeted data set
        without the admin's exemption; with the exemption the run is recorded."""
        validate_name(dataset)
        _text(model, what="model", limit=64)
        _text(run, what="run", limit=256)
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

        The run is accounted at the budget's delta; ``delta`` is used only when the data set
        has no budget (the charge is then recorded, not limited). Reserving again for the same
        ``run``, model, rows and mechanism while its charge is still reserved (a run resumed
        after its process died before it settled: nothing it computed was released) returns
        that charge: a window retried after a crash is charged once.

        Raises:
            BudgetExceededError: the data set's composed spend with this run would exceed its
                budget; nothing is written.
            InvalidInputError: invalid mechanism, rows, clipping or accountant.
        """
        validate_name(dataset)
        mechanism.validate()
        validate_accountant(accountant)
        if not (math.isfinite(clipping) and clipping > 0):
            raise InvalidInputError(f"clipping norm must be a number > 0, got {clipping}")
        if not 0 <= int(first_id) <= int(up_to_id):
            raise InvalidInputError(f"row range {first_id}..{up_to_id} is empty or negative")
        _text(model, what="model", limit=64)
        _text(run, what="run", limit=256)
        new = Span(int(first_id), int(up_to_id), mechanism)
        resumed = _still_reserved(
            self.engine,
            dataset,
            model=model,
            run=run,
            span=new,
            clipping=clipping,
            accountant=accountant,
        )
        if resumed is not None:  # the same run again: its process died before settling
            return resumed

        def attempt(state: State) -> Charge:
            budget = state.budget
            if budget is not None:
                run_delta = budget.delta
            elif delta is not None:
                run_delta = validate_budget(epsilon=1.0, delta=delta)[1]
            else:
                raise InvalidInputError(
                    f"data set {dataset!r} has no privacy budget: pass the delta to account at"
                )
            run_eps = epsilon_of([mechanism], delta=run_delta, accountant=accountant)
            if budget is not None:
                after = dataset_epsilon(
                    [*state.spans, new], delta=budget.delta, accountant=budget.accountant
                )
                if after > budget.epsilon:
                    spent = dataset_epsilon(
                        state.spans, delta=budget.delta, accountant=budget.accountant
                    )
                    raise refuse_if_current(
                        self.engine,
                        state,
                        BudgetExceededError(
                            f"data set {dataset!r}: budget ε={budget.epsilon:.2f} "
                            f"(δ={budget.delta:g}), spent ε={spent:.2f}, remaining "
                            f"{max(budget.epsilon - spent, 0.0):.2f}; this run needs "
                            f"ε={run_eps:.2f} ({mechanism.describe()}) and would bring rows "
                            f"{first_id}..{up_to_id} to ε={after:.2f}; raise the noise, train "
                            "fewer steps or on new rows only, or ask an admin to raise the budget"
                        ),
                    )

            def write(session: Session, _record: BudgetRecord) -> Charge:
                record = ChargeRecord(
                    dataset=dataset,
                    first_id=new.first_id,
                    up_to_id=new.up_to_id,
                    noise_multiplier=float(mechanism.noise_multiplier),
                    sample_rate=float(mechanism.sample_rate),
                    planned_steps=mechanism.steps,
                    steps=mechanism.steps,
                    clipping=float(clipping),
                    accountant=accountant,
                    delta=run_delta,
                    epsilon=run_eps,
                    model=model,
                    run=run,
                    status=RESERVED,
                )
                session.add(record)
                session.flush()
                return Charge._from(record)

            return write_if_unchanged(self.engine, state, write)

        return retrying(self.engine, dataset, attempt)

    def settle(
        self, charge_id: int, *, steps: int, version: int | None, status: str = COMMITTED
    ) -> Charge:
        """Record the steps a reserved run actually ran and the version it registered.

        ``status`` is ``committed`` (the run finished) or ``failed`` (it stays counted: its
        checkpoints exist). Steps beyond the plan (a resumed run repeating steps) are
        recorded as they happened, even if that overruns the budget.
        """
        if status not in (COMMITTED, FAILED):
            raise InvalidInputError(f"settle status must be {COMMITTED!r} or {FAILED!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise InvalidInputError(f"steps must be an integer >= 0, got {steps!r}")
        charge = self.charge(charge_id)
        actual = Mechanism(charge.noise_multiplier, charge.sample_rate, max(steps, 1))
        epsilon = (
            epsilon_of([actual], delta=charge.delta, accountant=charge.accountant) if steps else 0.0
        )

        def write(session: Session, _budget: BudgetRecord) -> Charge:
            record = charge_record(session, charge_id)
            if record.status != RESERVED:
                raise ConflictError(f"charge {charge_id} is already {record.status}")
            record.steps, record.epsilon = steps, epsilon
            record.version, record.status, record.settled_at = version, status, utcnow()
            session.flush()
            return Charge._from(record)

        return retrying(
            self.engine, charge.dataset, lambda state: write_if_unchanged(self.engine, state, write)
        )

    def refund(self, charge_id: int, *, actor: str, reason: str) -> Charge:
        """An admin's refund of a reserved or failed charge (it stops counting).

        Raises:
            ConflictError: the charge is committed (its version exists) or already refunded.
        """
        _text(actor, what="actor", limit=128)
        _text(reason, what="reason", limit=2000)

        def write(session: Session, _budget: BudgetRecord) -> Charge:
            record = charge_record(session, charge_id)
            if record.status not in (RESERVED, FAILED):
                raise ConflictError(
                    f"charge {charge_id} is {record.status}: only reserved or failed charges "
                    "can be refunded (a committed run's model exists)"
                )
            record.status, record.refunded_by, record.refund_reason = REFUNDED, actor, reason
            record.settled_at = record.settled_at or utcnow()
            session.flush()
            return Charge._from(record)

        dataset = self.charge(charge_id).dataset
        return retrying(
            self.engine, dataset, lambda state: write_if_unchanged(self.engine, state, write)
        )

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
