"""The lifecycle of one DP run's charge: reserve it (or refuse it), settle it, refund it.

:meth:`~inhouse.privacy.ledger.PrivacyLedger.reserve` composes the data set's spend with the
planned run added (:func:`~inhouse.privacy.accounting.dataset_epsilon`) and refuses with
:class:`~inhouse.errors.BudgetExceededError` before writing anything if that exceeds the
budget; the check and the insert are serialised per data set (:mod:`inhouse.privacy.state`).
"""

from __future__ import annotations

import math

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from inhouse.data.table import validate_name
from inhouse.db import session_scope, utcnow
from inhouse.errors import BudgetExceededError, ConflictError, InvalidInputError
from inhouse.privacy.accounting import (
    Mechanism,
    Span,
    dataset_epsilon,
    epsilon_of,
    validate_accountant,
    validate_budget,
)
from inhouse.privacy.reading import charge_record, load_charge
from inhouse.privacy.records import (
    COMMITTED,
    FAILED,
    REFUNDED,
    RESERVED,
    BudgetRecord,
    ChargeRecord,
)
from inhouse.privacy.state import State, refuse_if_current, retrying, write_if_unchanged
from inhouse.privacy.types import Charge


def check_text(value: str, *, what: str, limit: int) -> str:
    """``value`` if it is 1..``limit`` characters and not blank; else InvalidInputError."""
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


def reserve_charge(
    engine: Engine,
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
    check_text(model, what="model", limit=64)
    check_text(run, what="run", limit=256)
    new = Span(int(first_id), int(up_to_id), mechanism)
    resumed = _still_reserved(
        engine,
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
                    engine,
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

        return write_if_unchanged(engine, state, write)

    return retrying(engine, dataset, attempt)


def settle_charge(
    engine: Engine,
    charge_id: int,
    *,
    steps: int,
    version: int | None,
    status: str = COMMITTED,
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
    charge = load_charge(engine, charge_id)
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

    return retrying(engine, charge.dataset, lambda state: write_if_unchanged(engine, state, write))


def refund_charge(engine: Engine, charge_id: int, *, actor: str, reason: str) -> Charge:
    """An admin's refund of a reserved or failed charge (it stops counting).

    Raises:
        ConflictError: the charge is committed (its version exists) or already refunded.
    """
    check_text(actor, what="actor", limit=128)
    check_text(reason, what="reason", limit=2000)

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

    dataset = load_charge(engine, charge_id).dataset
    return retrying(engine, dataset, lambda state: write_if_unchanged(engine, state, write))
