"""Retraining triggers: new-row count, interval or cron schedule, data drift, manual request.

Each trigger is a pure function of numbers the coordinator observed, so they are unit-tested
without a database. Drift compares each feature's distribution in the training data with the
rows that arrived since (PSI over reference quantile bins, or the two-sample KS statistic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inhouse.config import CoordinatorSettings

PSI_BINS = 10
PSI_FLOOR = 1e-4  # empty bins would make PSI infinite


def rows_due(new_rows: int, min_rows: int | None) -> bool:
    """Enough new training rows arrived."""
    return min_rows is not None and new_rows >= min_rows


def schedule_due(
    *, now: float, last_run_at: float, interval_s: float | None, cron: str | None
) -> bool:
    """The interval since the last retrain elapsed, or a cron time passed since it."""
    if interval_s is not None and now - last_run_at >= interval_s:
        return True
    if cron is not None:
        from croniter import croniter

        following = float(croniter(cron, last_run_at).get_next(float))
        return following <= now
    return False


def psi(reference: np.ndarray, current: np.ndarray, *, bins: int = PSI_BINS) -> float:
    """Population stability index of one feature, on the reference's quantile bins."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    cur = np.asarray(current, dtype=np.float64).ravel()
    if ref.size == 0 or cur.size == 0:
        return 0.0
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    # Bins are (-inf, e0], (e0, e1], ...: discrete features (pixel counts) keep their own bins.
    ref_share = np.bincount(np.searchsorted(edges, ref), minlength=edges.size + 1) / ref.size
    cur_share = np.bincount(np.searchsorted(edges, cur), minlength=edges.size + 1) / cur.size
    ref_share = np.maximum(ref_share, PSI_FLOOR)
    cur_share = np.maximum(cur_share, PSI_FLOOR)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def ks(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two CDFs."""
    ref = np.sort(np.asarray(reference, dtype=np.float64).ravel())
    cur = np.sort(np.asarray(current, dtype=np.float64).ravel())
    if ref.size == 0 or cur.size == 0:
        return 0.0
    grid = np.concatenate([ref, cur])
    ref_cdf = np.searchsorted(ref, grid, side="right") / ref.size
    cur_cdf = np.searchsorted(cur, grid, side="right") / cur.size
    return float(np.max(np.abs(ref_cdf - cur_cdf)))


@dataclass(frozen=True)
class Drift:
    """The largest per-feature drift and the feature it is in."""

    score: float
    feature: int
    test: str


def drift(reference: np.ndarray, current: np.ndarray, *, test: str = "psi") -> Drift:
    """Per-feature ``test`` (``psi`` or ``ks``) between two ``(rows, features)`` arrays."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.ndim != 2 or cur.ndim != 2 or ref.shape[1] != cur.shape[1]:
        raise ValueError(f"drift needs two 2-D arrays of equal width, got {ref.shape}, {cur.shape}")
    statistic = psi if test == "psi" else ks
    scores = [statistic(ref[:, j], cur[:, j]) for j in range(ref.shape[1])]
    worst = int(np.argmax(scores)) if scores else 0
    return Drift(score=float(scores[worst]) if scores else 0.0, feature=worst, test=test)


@dataclass(frozen=True)
class Observation:
    """What the coordinator saw on one poll."""

    now: float
    max_row_id: int  # the newest row id of any split (the window's upper end)
    new_rows: int  # training rows with id above the watermark
    drift: Drift | None = None
    manual: bool = False


def fired(
    settings: CoordinatorSettings, observation: Observation, *, last_run_at: float
) -> list[str]:
    """The triggers that fire now, by name; a retrain needs at least one new row to learn from."""
    if observation.new_rows == 0:
        return []
    reasons: list[str] = []
    if observation.manual:
        reasons.append("manual")
    if rows_due(observation.new_rows, settings.min_rows):
        reasons.append(f"rows>={settings.min_rows}")
    if schedule_due(
        now=observation.now,
        last_run_at=last_run_at,
        interval_s=settings.interval_s,
        cron=settings.cron,
    ):
        reasons.append("schedule")
    threshold = settings.drift_threshold
    if threshold is not None and observation.drift is not None:
        if observation.drift.score > threshold:
            # The decision only: the score and the feature are statistics of unreleased rows
            # (the drift read is the ledger's documented exception only while nothing leaves).
            reasons.append(f"drift:{observation.drift.test}>{threshold:g}")
    return reasons
