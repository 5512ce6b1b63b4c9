"""The text kind's updating half: a LoRA or head-only adapter, measured as the replica serves it.

No compressed copy is registered: the text replica merges an adapter into its base and
quantizes it to int8 when it loads it, so candidate and champion are measured that way
(:func:`inhouse.kinds.text.served.load_as_served`), on the test split, against each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inhouse.data.text_import import read_text_rows
from inhouse.errors import InvalidInputError
from inhouse.kinds.text.retrain import train_candidate
from inhouse.kinds.text.served import load_as_served
from inhouse.kinds.updating import Measured, RetrainRun, StreamWindow, UpdatingKind
from inhouse.registry import ModelVersion

if TYPE_CHECKING:
    from inhouse.config import CoordinatorSettings


class TextUpdating:
    """:class:`~inhouse.kinds.updating.UpdatingKind` for Hugging Face text classifiers."""

    def check_settings(self, settings: CoordinatorSettings) -> None:
        """Refuse the drift trigger: it compares numeric features, which text rows lack."""
        if settings.drift_threshold is not None:
            raise InvalidInputError(
                "--drift-threshold compares numeric features, which text rows do not have; use "
                "--min-rows, --interval or --cron for a text model"
            )

    def train_candidate(self, run: RetrainRun) -> ModelVersion:
        """See :func:`inhouse.kinds.text.retrain.train_candidate`."""
        return train_candidate(run)

    def compress(self, run: RetrainRun, candidate: ModelVersion) -> ModelVersion | None:
        """None: an adapter is quantized where it is served, not stored compressed."""
        return None

    def measure(
        self, run: RetrainRun, candidate: ModelVersion, compressed: ModelVersion | None
    ) -> Measured:
        """Accuracy and one-text latency of both versions as served (merged, int8)."""
        registry, cs = run.registry, run.settings
        champion = registry.get(cs.model, "champion")
        test = read_text_rows(run.engine, cs.dataset, split="test", up_to_id=run.job.up_to_id)
        ours, theirs = load_as_served(registry, candidate), load_as_served(registry, champion)
        probe = test.texts[0] if test.texts else "probe"
        return Measured(
            candidate_version=candidate.version,
            candidate_accuracy=ours.accuracy(test.texts, test.labels),
            candidate_latency_ms=ours.latency_ms(probe),
            champion_version=champion.version,
            champion_accuracy=theirs.accuracy(test.texts, test.labels),
            champion_latency_ms=theirs.latency_ms(probe),
            importance_spearman=None,  # global importance is measured for tabular models only
            extra={"precision": ours.precision, "test_rows": len(test), "method": cs.text_method},
        )

    def stream_accuracy(
        self, window: StreamWindow, versions: list[ModelVersion]
    ) -> tuple[int, list[float]] | None:
        """Each version's accuracy, as served, on the window's texts."""
        texts = read_text_rows(window.engine, window.dataset, after_id=window.after_id)
        if len(texts) < window.min_rows:
            return None
        served = (load_as_served(window.registry, v) for v in versions)
        scores = [model.accuracy(texts.texts, texts.labels) for model in served]
        return len(texts), scores


UPDATING: UpdatingKind = TextUpdating()
