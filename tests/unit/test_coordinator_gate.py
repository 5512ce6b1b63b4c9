"""The evaluation gate: accuracy margin, latency ratio, explanation-consistency flag."""

from __future__ import annotations

import pytest

from inhouse.config import CoordinatorSettings
from inhouse.coordinator import judge
from inhouse.kinds.updating import Measured

SETTINGS = CoordinatorSettings(
    model="digits", max_accuracy_drop=0.5, max_latency_ratio=2.0, min_importance_spearman=0.6
)


def _measured(**kw: float | None) -> Measured:
    values: dict[str, float | None] = {
        "candidate_accuracy": 0.960,
        "champion_accuracy": 0.962,
        "candidate_latency_ms": 0.10,
        "champion_latency_ms": 0.10,
        "importance_spearman": 0.9,
    }
    values.update(kw)
    return Measured(candidate_version=4, champion_version=2, **values)  # type: ignore[arg-type]


def test_a_candidate_within_every_limit_is_promoted() -> None:
    result = judge(_measured(), SETTINGS)
    assert result.verdict == "promote" and result.promote
    assert result.figures["accuracy_drop_points"] == pytest.approx(0.2)
    assert result.candidate_version == 4 and result.champion_version == 2


def test_an_accuracy_drop_over_the_margin_is_rejected() -> None:
    result = judge(_measured(candidate_accuracy=0.955), SETTINGS)  # 0.7 points
    assert result.verdict == "reject" and "0.70 points below" in result.reasons[0]
    assert judge(_measured(candidate_accuracy=0.957), SETTINGS).verdict == "promote"  # 0.5


def test_a_slower_candidate_is_rejected() -> None:
    result = judge(_measured(candidate_latency_ms=0.25), SETTINGS)
    assert result.verdict == "reject" and "2.50x" in result.reasons[0]


def test_a_large_explanation_shift_is_flagged_for_review_not_promoted() -> None:
    result = judge(_measured(importance_spearman=0.3), SETTINGS)
    assert result.verdict == "review" and not result.promote
    assert "flagged for review" in result.reasons[0]


def test_a_rejection_wins_over_a_review_flag() -> None:
    result = judge(_measured(candidate_accuracy=0.5, importance_spearman=0.1), SETTINGS)
    assert result.verdict == "reject"


def test_without_a_champion_or_importance_only_the_candidate_counts() -> None:
    measured = Measured(candidate_version=1, candidate_accuracy=0.9, candidate_latency_ms=1.0)
    assert judge(measured, SETTINGS).verdict == "promote"
