"""Privacy accounting of DP-SGD runs with Opacus' accountants, and the data set composition rule.

One DP-SGD run is a :class:`Mechanism`: ``steps`` applications of the Poisson-subsampled
Gaussian mechanism with one ``noise_multiplier`` and ``sample_rate``. Runs compose through
the accountant itself (its ``history`` holds every ``(noise, q, steps)``), never by adding
epsilons, which would overstate the loss.

Composition rule of a data set (:func:`dataset_epsilon`): a row's privacy loss is the
sequential composition of every run whose row range ``[first_id, up_to_id]`` covers it;
disjoint ranges compose in parallel. The id line is cut at every range boundary, and the
data set's spent epsilon is the largest composed epsilon over those segments, all at the
budget's delta.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from inhouse.errors import InvalidInputError

ACCOUNTANTS = ("prv", "rdp")
DEFAULT_ACCOUNTANT = "prv"


@dataclass(frozen=True)
class Mechanism:
    """One DP-SGD run: ``steps`` Poisson-sampled Gaussian steps (Opacus' accounting unit)."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def validate(self) -> Mechanism:
        """Return self if the run is a valid DP mechanism; raise InvalidInputError otherwise."""
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise InvalidInputError(
                f"noise multiplier must be a number > 0, got {self.noise_multiplier}"
            )
        if not (math.isfinite(self.sample_rate) and 0 < self.sample_rate <= 1):
            raise InvalidInputError(f"sample rate must be in (0, 1], got {self.sample_rate}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise InvalidInputError(f"steps must be an integer >= 1, got {self.steps!r}")
        return self

    def describe(self) -> str:
        """``noise 1.1, q=0.018, 1200 steps`` for messages."""
        return f"noise {self.noise_multiplier:g}, q={self.sample_rate:.3g}, {self.steps} steps"


def validate_budget(*, epsilon: float, delta: float) -> tuple[float, float]:
    """Check ``epsilon > 0`` (finite) and ``0 < delta < 1``; returns them as floats."""
    try:
        eps, dlt = float(epsilon), float(delta)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"epsilon and delta must be numbers: {epsilon!r}, {delta!r}"
        ) from None
    if not (math.isfinite(eps) and eps > 0):
        raise InvalidInputError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    if not (math.isfinite(dlt) and 0 < dlt < 1):
        raise InvalidInputError(f"delta must be in (0, 1), got {delta!r} (typically < 1/rows)")
    return eps, dlt


def validate_accountant(name: str) -> str:
    """Return ``name`` if it is an accountant we compose with (``prv`` or ``rdp``)."""
    if name not in ACCOUNTANTS:
        raise InvalidInputError(f"unknown accountant {name!r}; use one of {', '.join(ACCOUNTANTS)}")
    return name


def _history(mechanisms: Iterable[Mechanism]) -> tuple[tuple[float, float, int], ...]:
    return tuple(
        (float(m.noise_multiplier), float(m.sample_rate), int(m.steps))
        for m in (mech.validate() for mech in mechanisms)
    )


@lru_cache(maxsize=4096)
def _epsilon(history: tuple[tuple[float, float, int], ...], delta: float, accountant: str) -> float:
    from opacus.accountants import create_accountant

    acct = create_accountant(mechanism=accountant)
    acct.history = list(history)
    try:
        eps = float(acct.get_epsilon(delta=delta))
    except (ArithmeticError, ValueError):
        eps = math.inf
    if not math.isfinite(eps) and accountant == "prv":
        # PRV's discretisation breaks down at very low noise (it returns inf); RDP is a
        # valid, looser upper bound there, so the ledger never under-counts.
        return _epsilon(history, delta, "rdp")
    return eps


def epsilon_of(
    mechanisms: Sequence[Mechanism], *, delta: float, accountant: str = DEFAULT_ACCOUNTANT
) -> float:
    """Epsilon at ``delta`` of the sequential composition of ``mechanisms``.

    Each mechanism's ``(noise, sample_rate, steps)`` goes into the Opacus accountant's
    history, then ``get_epsilon(delta)``: the same number an Opacus accountant stepped
    through those runs reports. No mechanism: 0.
    """
    validate_accountant(accountant)
    if not 0 < delta < 1:
        raise InvalidInputError(f"delta must be in (0, 1), got {delta!r}")
    history = _history(mechanisms)
    if not history:
        return 0.0
    return _epsilon(history, float(delta), accountant)


def noise_for_target(
    *,
    epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = DEFAULT_ACCOUNTANT,
) -> float:
    """The noise multiplier with which one run of ``steps`` steps spends at most ``epsilon``.

    Opacus' ``get_noise_multiplier`` (binary search to within 0.01 in epsilon).
    """
    from opacus.accountants.utils import get_noise_multiplier

    eps, dlt = validate_budget(epsilon=epsilon, delta=delta)
    validate_accountant(accountant)
    Mechanism(1.0, sample_rate, steps).validate()
    try:
        return float(
            get_noise_multiplier(
                target_epsilon=eps,
                target_delta=dlt,
                sample_rate=sample_rate,
                steps=steps,
                accountant=accountant,
            )
        )
    except ValueError as exc:
        raise InvalidInputError(f"no noise reaches ε={eps:g} at δ={dlt:g}: {exc}") from None


@dataclass(frozen=True)
class Span:
    """A mechanism applied to the rows ``first_id..up_to_id`` (inclusive)."""

    first_id: int
    up_to_id: int
    mechanism: Mechanism


def covering_sets(spans: Sequence[Span]) -> list[tuple[int, ...]]:
    """The maximal sets of spans (indices) that cover one segment of the id line together.

    A segment covered by a subset of another segment's spans cannot have a larger epsilon
    (composition only adds loss), so only maximal sets need the accountant.
    """
    points = sorted({s.first_id for s in spans} | {s.up_to_id + 1 for s in spans})
    sets: set[frozenset[int]] = set()
    for start, end in zip(points, points[1:], strict=False):
        cover = frozenset(
            i for i, s in enumerate(spans) if s.first_id <= start and s.up_to_id >= end - 1
        )
        if cover:
            sets.add(cover)
    maximal = [s for s in sets if not any(s < other for other in sets)]
    return sorted(tuple(sorted(s)) for s in maximal)


def dataset_epsilon(
    spans: Sequence[Span], *, delta: float, accountant: str = DEFAULT_ACCOUNTANT
) -> float:
    """Spent epsilon of a data set: max over row segments of the covering runs' composition."""
    return max(
        (
            epsilon_of([spans[i].mechanism for i in cover], delta=delta, accountant=accountant)
            for cover in covering_sets(spans)
        ),
        default=0.0,
    )
