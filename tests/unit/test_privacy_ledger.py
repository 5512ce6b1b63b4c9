"""The privacy ledger on SQLite and PostgreSQL: charges, refusals, composition, exemptions."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from opacus.accountants import PRVAccountant, RDPAccountant

import inhouse.privacy.charges as charges_module
from inhouse.data import create_dataset
from inhouse.errors import (
    BudgetExceededError,
    ConflictError,
    DatasetNotFoundError,
    InvalidInputError,
    PermissionDeniedError,
)
from inhouse.privacy import Mechanism, PrivacyLedger, epsilon_of
from inhouse.schema import get_engine

DELTA = 1e-5
RUN = Mechanism(1.1, 0.05, 120)


def _independent(accountant: str, *runs: Mechanism) -> float:
    """An Opacus accountant stepped once per optimizer step, as a DP optimizer steps it."""
    acct = PRVAccountant() if accountant == "prv" else RDPAccountant()
    for run in runs:
        for _ in range(run.steps):
            acct.step(noise_multiplier=run.noise_multiplier, sample_rate=run.sample_rate)
    return float(acct.get_epsilon(delta=DELTA))


@pytest.fixture()
def ledger(db_url: str) -> PrivacyLedger:
    engine = get_engine(db_url)
    for name in ("cancer", "other"):
        create_dataset(engine, name=name, feature_names=["a", "b"], class_names=["no", "yes"])
    return PrivacyLedger(engine)


def _reserve(ledger: PrivacyLedger, mechanism: Mechanism = RUN, **kwargs: Any) -> Any:
    args: dict[str, Any] = {
        "dataset": "cancer",
        "first_id": 1,
        "up_to_id": 400,
        "mechanism": mechanism,
        "accountant": "rdp",
        "clipping": 1.0,
        "model": "cancer",
        "run": "run-1",
    }
    return ledger.reserve(**(args | kwargs))


def test_a_charge_carries_the_epsilon_an_independent_opacus_accountant_computes(
    ledger: PrivacyLedger,
) -> None:
    ledger.set_budget(dataset="cancer", epsilon=10.0, delta=DELTA, actor="admin")
    charge = _reserve(ledger, accountant="prv")
    assert charge.status == "reserved"
    assert charge.epsilon == _independent("prv", RUN)
    settled = ledger.settle(charge.id, steps=100, version=3)
    short = Mechanism(RUN.noise_multiplier, RUN.sample_rate, 100)
    assert settled.epsilon == _independent("prv", short)
    assert settled.lineage() == {
        "epsilon": settled.epsilon,
        "delta": DELTA,
        "accountant": "prv",
        "noise_multiplier": 1.1,
        "clipping": 1.0,
        "sample_rate": 0.05,
        "steps": 100,
        "dataset": "cancer",
        "rows": {"first_id": 1, "up_to_id": 400},
        "charge_id": charge.id,
    }
    [report] = ledger.report("cancer")
    assert report.spent == pytest.approx(settled.epsilon)  # PRV budget: the same accountant
    assert report.remaining == pytest.approx(10.0 - settled.epsilon)
    assert report.by_version() == {"cancer v3": [settled]}
    with pytest.raises(ConflictError):
        ledger.settle(charge.id, steps=100, version=3)


def test_incremental_retrains_compose_and_disjoint_rows_do_not(ledger: PrivacyLedger) -> None:
    ledger.set_budget(dataset="cancer", epsilon=50.0, delta=DELTA, actor="admin", accountant="rdp")
    first = Mechanism(1.1, 0.05, 120)
    second = Mechanism(1.3, 0.04, 150)
    _reserve(ledger, first, up_to_id=400)
    assert ledger.spent("cancer") == _independent("rdp", first)
    _reserve(ledger, second, first_id=401, up_to_id=600, run="run-2")  # new rows only
    assert ledger.spent("cancer") == max(_independent("rdp", first), _independent("rdp", second))
    _reserve(ledger, second, first_id=1, up_to_id=600, run="run-3")  # old + new rows
    composed = _independent("rdp", first, second)
    assert ledger.spent("cancer") == pytest.approx(composed, rel=1e-12)
    loose = sum(c.epsilon for c in ledger.report("cancer")[0].charges)
    assert ledger.spent("cancer") < loose


def test_an_over_budget_run_is_refused_before_anything_is_written(ledger: PrivacyLedger) -> None:
    single = epsilon_of([RUN], delta=DELTA, accountant="rdp")
    budget = single * 1.2  # room for one run, not two over the same rows (x1.36)
    ledger.set_budget(
        dataset="cancer", epsilon=budget, delta=DELTA, actor="admin", accountant="rdp"
    )
    _reserve(ledger)
    with pytest.raises(BudgetExceededError) as refused:
        _reserve(ledger, run="run-2")
    message = refused.value.message
    assert f"budget ε={budget:.2f}" in message
    assert f"spent ε={single:.2f}" in message
    assert f"remaining {budget - single:.2f}" in message
    assert f"this run needs ε={single:.2f} (noise 1.1, q=0.05, 120 steps)" in message
    assert refused.value.status_code == 409
    assert len(ledger.report("cancer")[0].charges) == 1
    # The same run on rows nobody trained on fits: disjoint rows compose in parallel.
    _reserve(ledger, first_id=401, up_to_id=800, run="run-3")
    # Budgets may be lowered only to what is spent.
    with pytest.raises(BudgetExceededError):
        ledger.set_budget(
            dataset="cancer", epsilon=single / 2, delta=DELTA, actor="admin", accountant="rdp"
        )
    ledger.set_budget(
        dataset="cancer", epsilon=single * 1.01, delta=DELTA, actor="admin", accountant="rdp"
    )


def test_failed_runs_stay_counted_until_an_admin_refunds_them(ledger: PrivacyLedger) -> None:
    ledger.set_budget(dataset="cancer", epsilon=100.0, delta=DELTA, actor="admin", accountant="rdp")
    failed = ledger.settle(_reserve(ledger).id, steps=40, version=None, status="failed")
    partial = _independent("rdp", Mechanism(1.1, 0.05, 40))
    assert ledger.spent("cancer") == partial
    refunded = ledger.refund(failed.id, actor="admin", reason="crashed before any checkpoint")
    assert (refunded.status, refunded.refunded_by) == ("refunded", "admin")
    assert ledger.spent("cancer") == 0.0
    committed = ledger.settle(_reserve(ledger, run="run-2").id, steps=120, version=1)
    with pytest.raises(ConflictError, match="committed"):
        ledger.refund(committed.id, actor="admin", reason="oops")
    with pytest.raises(ConflictError):
        ledger.refund(failed.id, actor="admin", reason="twice")


def test_non_dp_training_needs_an_explicit_exemption_and_is_recorded(
    ledger: PrivacyLedger,
) -> None:
    ledger.check_non_dp(dataset="cancer", model="cancer", run="free")  # no budget: fine
    ledger.set_budget(dataset="cancer", epsilon=3.0, delta=DELTA, actor="admin")
    with pytest.raises(PermissionDeniedError, match="allow-non-dp cancer"):
        ledger.check_non_dp(dataset="cancer", model="cancer", run="r1")
    ledger.allow_non_dp(dataset="cancer", actor="admin", reason="synthetic rows only")
    ledger.check_non_dp(dataset="cancer", model="cancer", run="r2")
    [report] = ledger.report("cancer")
    [run] = report.non_dp_runs
    assert (run.run, run.allowed_by, run.reason) == ("r2", "admin", "synthetic rows only")
    assert report.budget is not None and report.budget.non_dp_allowed
    ledger.revoke_non_dp(dataset="cancer", actor="admin")
    with pytest.raises(PermissionDeniedError):
        ledger.check_non_dp(dataset="cancer", model="cancer", run="r3")


def test_bad_budgets_and_unknown_data_sets_are_refused(ledger: PrivacyLedger) -> None:
    for epsilon, delta in ((0.0, DELTA), (-1.0, DELTA), (1.0, 0.0), (1.0, 1.0)):
        with pytest.raises(InvalidInputError):
            ledger.set_budget(dataset="cancer", epsilon=epsilon, delta=delta, actor="admin")
    with pytest.raises(DatasetNotFoundError):
        ledger.set_budget(dataset="nope", epsilon=1.0, delta=DELTA, actor="admin")
    with pytest.raises(InvalidInputError, match="delta"):
        _reserve(ledger)  # no budget and no delta to account at
    charge = _reserve(ledger, delta=DELTA)  # no budget: recorded, not limited
    assert ledger.budget("cancer") is None
    assert ledger.spent("cancer") == charge.epsilon
    cancer, other = ledger.report()  # every data set of the catalog
    assert (cancer.dataset, other.dataset, other.spent, other.remaining) == (
        "cancer",
        "other",
        0.0,
        None,
    )


def test_two_concurrent_reservations_cannot_both_spend_the_last_of_a_budget(
    ledger: PrivacyLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    single = epsilon_of([RUN], delta=DELTA, accountant="rdp")
    ledger.set_budget(
        dataset="cancer", epsilon=single * 1.2, delta=DELTA, actor="admin", accountant="rdp"
    )
    # Both threads meet inside the check (if the lock let them in together), then compute:
    # without the lock both would see no spend and both would be charged.
    barrier = threading.Barrier(2)
    real = charges_module.dataset_epsilon

    def rendezvous(*args: Any, **kwargs: Any) -> float:
        try:
            barrier.wait(timeout=1.5)
        except threading.BrokenBarrierError:
            pass
        return real(*args, **kwargs)

    monkeypatch.setattr(charges_module, "dataset_epsilon", rendezvous)
    outcomes: list[str] = []

    def attempt(run: str) -> None:
        try:
            _reserve(ledger, run=run)
            outcomes.append("charged")
        except BudgetExceededError:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(f"run-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["charged", "refused"]
    assert len(ledger.report("cancer")[0].charges) == 1


def test_a_run_resumed_before_it_settled_is_charged_once(ledger: PrivacyLedger) -> None:
    """A process that died after reserving (nothing released) and reserves again for the same
    run, rows and mechanism gets its charge back; anything else is a new charge."""
    ledger.set_budget(dataset="cancer", epsilon=50.0, delta=DELTA, actor="admin", accountant="rdp")
    first = _reserve(ledger, run="retrain-w1")
    again = _reserve(ledger, run="retrain-w1")
    assert again.id == first.id and len(ledger.report("cancer")[0].charges) == 1
    assert ledger.spent("cancer") == _independent("rdp", RUN)
    other = _reserve(ledger, Mechanism(1.1, 0.05, 60), run="retrain-w1")  # another plan
    assert other.id != first.id
    ledger.settle(first.id, steps=RUN.steps, version=3)
    after = _reserve(ledger, run="retrain-w1")  # settled: a new run of it is a new spend
    assert after.id not in (first.id, other.id)
