"""The evaluation gate between a retrained candidate and the serving champion.

Both are measured on the same fixed held-out rows (the test split) as they would serve (the
compressed artifact when that passed its own compression gate). The verdict:

- ``reject`` when the candidate loses more than ``max_accuracy_drop`` accuracy points, or is
  more than ``max_latency_ratio`` times slower;
- ``review`` (flagged, not promoted) when it passes those but its global feature importance
  ranks features very differently from the champion's (Spearman below
  ``min_importance_spearman``): it decides for other reasons, a human should look;
- ``promote`` otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from inhouse.config import CoordinatorSettings
from inhouse.kinds.updating import Measured

Verdict = Literal["promote", "reject", "review"]


@dataclass(frozen=True)
class GateResult:
    """The verdict, why, and the figures it was based on."""

    verdict: Verdict
    reasons: list[str]
    candidate_version: int
    champion_version: int | None
    figures: dict[str, Any]

    @property
    def promote(self) -> bool:
        return self.verdict == "promote"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(measured: Measured, settings: CoordinatorSettings) -> GateResult:
    """Apply the gate of ``settings`` to ``measured``."""
    figures = asdict(measured)
    reasons: list[str] = []
    verdict: Verdict = "promote"
    if measured.champion_accuracy is not None:
        drop = (measured.champion_accuracy - measured.candidate_accuracy) * 100.0
        figures["accuracy_drop_points"] = drop
        if drop > settings.max_accuracy_drop + 1e-9:  # k/n accuracies: no float noise
            verdict = "reject"
            reasons.append(
                f"accuracy {measured.candidate_accuracy:.4f} is {drop:.2f} points below the "
                f"champion's {measured.champion_accuracy:.4f} (limit {settings.max_accuracy_drop})"
            )
    if measured.champion_latency_ms:
        ratio = measured.candidate_latency_ms / measured.champion_latency_ms
        figures["latency_ratio"] = ratio
        if ratio > settings.max_latency_ratio:
            verdict = "reject"
            reasons.append(
                f"latency {measured.candidate_latency_ms:.3f} ms is {ratio:.2f}x the champion's "
                f"(limit {settings.max_latency_ratio}x)"
            )
    spearman = measured.importance_spearman
    limit = settings.min_importance_spearman
    if verdict == "promote" and spearman is not None and spearman < limit:
        verdict = "review"
        reasons.append(
            f"global feature importance rank correlation {spearman:.3f} with the champion is "
            f"below {settings.min_importance_spearman}: flagged for review"
        )
    if verdict == "promote":
        reasons.append("passed: accuracy, latency and explanation consistency within limits")
    return GateResult(
        verdict=verdict,
        reasons=reasons,
        candidate_version=measured.candidate_version,
        champion_version=measured.champion_version,
        figures=figures,
    )
