"""The tuning half of a model kind (``TuningKind``): register the best trial of a search.

``inhouse tune`` submits ``python -m inhouse.jobs.tune``, which searches the run's ``lr``,
``hidden`` and ``batch_size`` with Ray Tune (each trial a Ray Train run of the kind's training,
ASHA stopping the weak ones) and hands the best trial's last checkpoint to the data set's
kind: :meth:`TuningKind.register_best` loads it, evaluates it on the test split and registers
it with the whole search in its lineage. The Ray wiring stays in the job.

A kind without a ``tuning.py`` has no search space here: asking is a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from inhouse.config import Settings


@dataclass(frozen=True)
class BestTrial:
    """The best trial of a search: its last ``checkpoint`` (sealed under ``artifact_id``, the
    trial's run name, at ``epoch``), the ``options`` it trained with (the search's values and
    the epochs it ran) and the search's run name and directory."""

    checkpoint: Path
    artifact_id: str
    epoch: int
    options: Any
    run_name: str
    run_dir: Path


class TuningKind(Protocol):
    """What ``jobs/tune.py`` calls; one per tunable kind (``kinds/<name>/tuning.py``, whose
    ``TUNING`` is one of these)."""

    def register_best(
        self, settings: Settings, best: BestTrial, search: dict[str, Any]
    ) -> dict[str, Any]:
        """Evaluate the best trial's weights on the test split and register them (promoted when
        ``best.options.promote``), ``search`` in the lineage; at least ``version`` and
        ``test_accuracy``."""
        ...
