"""Accounting: our composition equals an independent Opacus accountant stepped through the runs."""

from __future__ import annotations

import math

import pytest
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

from inhouse.errors import InvalidInputError
from inhouse.privacy import Mechanism, Span, dataset_epsilon, epsilon_of, noise_for_target
from inhouse.privacy.accounting import covering_sets

DELTA = 1e-5
A = Mechanism(1.1, 0.05, 120)
B = Mechanism(0.9, 0.1, 80)


def _stepped(accountant: PRVAccountant | RDPAccountant, *runs: Mechanism) -> float:
    """What Opacus reports after being stepped once per optimizer step, as DP-SGD does."""
    for run in runs:
        for _ in range(run.steps):
            accountant.step(noise_multiplier=run.noise_multiplier, sample_rate=run.sample_rate)
    return float(accountant.get_epsilon(delta=DELTA))


@pytest.mark.parametrize("name,cls", [("prv", PRVAccountant), ("rdp", RDPAccountant)])
def test_epsilon_equals_an_opacus_accountant_stepped_through_the_runs(
    name: str, cls: type[PRVAccountant] | type[RDPAccountant]
) -> None:
    assert epsilon_of([A], delta=DELTA, accountant=name) == _stepped(cls(), A)
    assert epsilon_of([A, B], delta=DELTA, accountant=name) == _stepped(cls(), A, B)
    assert epsilon_of([], delta=DELTA, accountant=name) == 0.0


def test_rdp_composition_matches_the_rdp_formula_not_a_sum() -> None:
    orders = RDPAccountant.DEFAULT_ALPHAS
    rdp = sum(
        compute_rdp(
            q=m.sample_rate, noise_multiplier=m.noise_multiplier, steps=m.steps, orders=orders
        )
        for m in (A, B)
    )
    expected, _ = get_privacy_spent(orders=orders, rdp=rdp, delta=DELTA)
    composed = epsilon_of([A, B], delta=DELTA, accountant="rdp")
    assert composed == pytest.approx(float(expected), rel=1e-12)
    loose = epsilon_of([A], delta=DELTA, accountant="rdp") + epsilon_of(
        [B], delta=DELTA, accountant="rdp"
    )
    assert composed < loose  # composition is tighter than adding epsilons


def test_data_set_epsilon_composes_overlaps_and_takes_the_max_over_disjoint_rows() -> None:
    eps = {
        key: epsilon_of(runs, delta=DELTA, accountant="rdp")
        for key, runs in {"a": [A], "b": [B], "ab": [A, B]}.items()
    }
    disjoint = [Span(1, 100, A), Span(101, 200, B)]
    assert dataset_epsilon(disjoint, delta=DELTA, accountant="rdp") == max(eps["a"], eps["b"])
    nested = [Span(1, 100, A), Span(1, 200, B)]  # an incremental retrain over old + new rows
    assert dataset_epsilon(nested, delta=DELTA, accountant="rdp") == eps["ab"]
    partial = [Span(1, 100, A), Span(51, 150, B)]
    assert dataset_epsilon(partial, delta=DELTA, accountant="rdp") == eps["ab"]
    assert dataset_epsilon([], delta=DELTA, accountant="rdp") == 0.0


def test_only_maximal_covering_sets_are_composed() -> None:
    spans = [Span(1, 100, A), Span(1, 200, B), Span(150, 300, A), Span(400, 500, B)]
    # segments: 1-100 {0,1}, 101-149 {1}, 150-200 {1,2}, 201-300 {2}, 400-500 {3}
    assert covering_sets(spans) == [(0, 1), (1, 2), (3,)]


def test_noise_for_target_reaches_the_target() -> None:
    noise = noise_for_target(
        epsilon=2.0, delta=DELTA, sample_rate=0.05, steps=200, accountant="rdp"
    )
    spent = epsilon_of([Mechanism(noise, 0.05, 200)], delta=DELTA, accountant="rdp")
    assert 1.98 <= spent <= 2.0
    lower = epsilon_of([Mechanism(noise * 0.9, 0.05, 200)], delta=DELTA, accountant="rdp")
    assert lower > 2.0  # less noise would overspend: the search found the boundary


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epsilon": 0.0, "delta": DELTA},
        {"epsilon": -1.0, "delta": DELTA},
        {"epsilon": math.inf, "delta": DELTA},
        {"epsilon": 1.0, "delta": 0.0},
        {"epsilon": 1.0, "delta": 1.0},
        {"epsilon": 1.0, "delta": math.nan},
    ],
)
def test_bad_targets_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidInputError):
        noise_for_target(sample_rate=0.1, steps=10, accountant="rdp", **kwargs)


@pytest.mark.parametrize(
    "mechanism",
    [
        Mechanism(0.0, 0.1, 10),
        Mechanism(1.0, 0.0, 10),
        Mechanism(1.0, 1.5, 10),
        Mechanism(1.0, 0.1, 0),
    ],
)
def test_invalid_mechanisms_and_accountants_are_refused(mechanism: Mechanism) -> None:
    with pytest.raises(InvalidInputError):
        epsilon_of([mechanism], delta=DELTA)
    with pytest.raises(InvalidInputError):
        epsilon_of([A], delta=DELTA, accountant="gdp")
