"""The updating half of a model kind (``UpdatingKind``): retrain, measure for the gate, compress.

The coordinator's retrain (:func:`inhouse.coordinator.retrain.run_retrain`) owns what every
kind shares: finding an earlier attempt of the same row window, settling its privacy charge,
and the figures common to every measurement. The kind does what differs: train and register a
candidate from the champion and the window's rows, compress it (or not), measure it against
the champion as each would serve, and score versions on the stream's newer rows for a canary.

This module also holds the values that cross the interface: the job (:class:`RetrainJob`, a
typed model, also what ``python -m inhouse.jobs.retrain`` builds), the run it belongs to
(:class:`RetrainRun`), the gate's figures (:class:`Measured`) and the rows a canary is
scored on (:class:`StreamWindow`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from inhouse.config import CoordinatorSettings
    from inhouse.registry import ModelVersion, Registry


class RetrainJob(BaseModel):
    """One retrain: the rows ``after_id < id <= up_to_id`` of the coordinator's data set.

    ``run_id`` is deterministic per window (:func:`inhouse.coordinator.run_id`), so a resumed
    retrain finds the versions an earlier attempt registered through their lineage.
    """

    model_config = ConfigDict(frozen=True)

    run_id: str
    after_id: int
    up_to_id: int
    new_rows: int = 0
    reasons: list[str] = []
    started_at: float | None = None
    champion: int | None = None


def retrain_lineage(
    cs: CoordinatorSettings,
    job: RetrainJob,
    *,
    parent: ModelVersion,
    new_rows: int,
    train_rows: int,
    warm_start: dict[str, Any],
) -> dict[str, Any]:
    """The lineage every kind's retrained candidate records: its row window (new rows plus
    replayed older ones), parent, warm start, settings and the coordinator run."""
    return {
        "dataset": cs.dataset,
        "rows": {
            "first_id": job.after_id + 1,
            "up_to_id": job.up_to_id,
            "new_train_rows": new_rows,
            "replay_rows": train_rows - new_rows,
            "replay_up_to_id": job.after_id,
            "train_rows": train_rows,
        },
        "parent": {"model": parent.model, "version": parent.version},
        "warm_start": warm_start,
        "config": cs.model_dump(mode="json"),
        "coordinator_run": job.run_id,
        "trigger": list(job.reasons),
        "run": job.run_id,
        # the user code a builder's version runs (inhouse.models.builder), named again
        **({"builder": parent.lineage["builder"]} if "builder" in parent.lineage else {}),
    }


@dataclass(frozen=True)
class Measured:
    """The figures the gate compares; accuracies in [0, 1], latencies in milliseconds."""

    candidate_version: int
    candidate_accuracy: float
    candidate_latency_ms: float
    champion_version: int | None = None
    champion_accuracy: float | None = None
    champion_latency_ms: float | None = None
    importance_spearman: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrainRun:
    """Where a retrain works: the registry, the database, the coordinator's settings, the job."""

    registry: Registry
    engine: Engine
    settings: CoordinatorSettings
    job: RetrainJob


@dataclass(frozen=True)
class StreamWindow:
    """The labelled rows of ``dataset`` with ``id > after_id`` (those that arrived during a
    canary), as evidence once there are at least ``min_rows`` of them."""

    registry: Registry
    engine: Engine
    dataset: str
    after_id: int
    min_rows: int


class UpdatingKind(Protocol):
    """What retraining and the coordinator call; one per kind (``kinds/<name>/updating.py``)."""

    def check_settings(self, settings: CoordinatorSettings) -> None:
        """Refuse coordinator settings this kind cannot honour, before anything starts.

        Raises:
            InvalidInputError: naming the setting and what to use instead.
        """
        ...

    def train_candidate(self, run: RetrainRun) -> ModelVersion:
        """Train a candidate from the champion on the job's rows (plus replayed older rows)
        and register it with lineage naming ``run.job.run_id``; a DP retrain is planned and
        charged to the privacy ledger before a row is read."""
        ...

    def compress(self, run: RetrainRun, candidate: ModelVersion) -> ModelVersion | None:
        """Compress ``candidate`` the way the champion was and register the result; None when
        this kind registers no compressed copy (it is compressed where it is served)."""
        ...

    def measure(
        self, run: RetrainRun, candidate: ModelVersion, compressed: ModelVersion | None
    ) -> Measured:
        """The candidate (compressed when that passed its own gate) and the champion, each
        measured as it would serve on the test split up to ``run.job.up_to_id``.

        The kind's own figures go in ``extra`` (``test_rows`` and what else it reports); the
        caller adds the ones every kind shares.
        """
        ...

    def stream_accuracy(
        self, window: StreamWindow, versions: list[ModelVersion]
    ) -> tuple[int, list[float]] | None:
        """The number of rows in ``window`` and each version's accuracy on them, as its
        replicas serve it (canary evidence); None below ``window.min_rows`` rows."""
        ...
