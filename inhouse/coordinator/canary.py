"""Canary promotion: a candidate that passed the gate first serves a share of the traffic.

While a canary runs, the registry alias ``candidate`` points at it and the active canary
(:mod:`inhouse.canary`) says which share of requests the ingress sends to it and until when.
Both are written in the coordinator's decision transaction. :func:`judge_canary` decides:

- ``rollback`` at once when the candidate's error rate exceeds the limit (after a minimum
  number of its requests), or at the end of the window when its p95 latency is more than
  ``canary_max_latency_ratio`` times the champion's, or its accuracy on the labelled rows that
  arrived since its training window (feedback) is worse by more than
  ``canary_max_accuracy_drop`` points;
- ``promote`` at the end of the window otherwise (also without traffic: that is recorded);
- ``watch`` until then.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from inhouse.canary import Canary, Traffic
from inhouse.config import CoordinatorSettings

CanaryVerdict = Literal["watch", "promote", "rollback"]


@dataclass(frozen=True)
class Feedback:
    """Accuracy of both versions on labelled rows neither trained on."""

    rows: int
    candidate_accuracy: float
    champion_accuracy: float


@dataclass(frozen=True)
class CanaryJudgement:
    verdict: CanaryVerdict
    reasons: list[str]
    figures: dict[str, Any] = field(default_factory=dict)


def judge_canary(
    canary: Canary,
    *,
    candidate: Traffic,
    champion: Traffic,
    feedback: Feedback | None,
    settings: CoordinatorSettings,
    now: float,
) -> CanaryJudgement:
    """Watch, promote or roll back ``canary`` from the traffic seen so far."""
    s = settings
    figures: dict[str, Any] = {
        "candidate": candidate.summary(),
        "champion": champion.summary(),
        "window_s": canary.ends_at - canary.started_at,
        "share": canary.share,
    }
    if (
        candidate.requests >= s.canary_min_requests
        and candidate.error_rate > s.canary_max_error_rate
    ):
        return CanaryJudgement(
            "rollback",
            [
                f"canary error rate {candidate.error_rate:.2%} over {candidate.requests} requests "
                f"exceeds {s.canary_max_error_rate:.2%}"
            ],
            figures,
        )
    if now < canary.ends_at:
        return CanaryJudgement("watch", [f"watching until {canary.ends_at - now:.0f} s from now"])
    reasons: list[str] = []
    enough = min(candidate.requests, champion.requests) >= s.canary_min_requests
    if enough and champion.quantile_ms(0.95) > 0:
        ratio = candidate.quantile_ms(0.95) / champion.quantile_ms(0.95)
        figures["p95_ratio"] = ratio
        if ratio > s.canary_max_latency_ratio:
            reasons.append(
                f"canary p95 latency is {ratio:.2f}x the champion's "
                f"(limit {s.canary_max_latency_ratio}x)"
            )
    if feedback is not None:
        figures["feedback"] = asdict(feedback)
        drop = (feedback.champion_accuracy - feedback.candidate_accuracy) * 100.0
        if feedback.rows >= s.canary_min_feedback_rows and drop > s.canary_max_accuracy_drop:
            reasons.append(
                f"on {feedback.rows} new labelled rows the candidate's accuracy "
                f"{feedback.candidate_accuracy:.4f} is {drop:.2f} points below the champion's "
                f"(limit {s.canary_max_accuracy_drop})"
            )
    if reasons:
        return CanaryJudgement("rollback", reasons, figures)
    passed = [f"canary passed: {candidate.requests} requests, {candidate.errors} errors"]
    if not enough:
        passed.append(f"(fewer than {s.canary_min_requests} requests: latency not compared)")
    return CanaryJudgement("promote", passed, figures)
