"""The tabular kind's updating half: warm-start the MLP, compress it like the champion, measure.

A candidate is compressed with the settings the champion was compressed with (DP versions are
only quantized), and the gate sees the compressed copy when that passed its own gate. Global
feature importances of candidate and champion are compared (Spearman) for the review verdict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from inhouse.compress.report import accuracy, latency_ms
from inhouse.data import read_rows
from inhouse.explain.importance import GlobalImportance, compare_importance
from inhouse.kinds.modules import load_module
from inhouse.kinds.tabular.retrain import train_candidate
from inhouse.kinds.updating import Measured, RetrainRun, StreamWindow, UpdatingKind
from inhouse.registry import COMPRESSED_FORMAT, ModelVersion, Registry, float_version

if TYPE_CHECKING:
    from inhouse.config import CoordinatorSettings


def _spearman(registry: Registry, champion: ModelVersion, candidate: ModelVersion) -> float | None:
    # global importances are statistics of rows, kept in the (encrypted) lineage files only
    ours, theirs = (
        registry.full_lineage(champion).get("global_importance"),
        registry.full_lineage(candidate).get("global_importance"),
    )
    if not ours or not theirs:
        return None
    old, new = GlobalImportance.from_dict(ours), GlobalImportance.from_dict(theirs)
    return float(compare_importance(old, new).spearman)


class TabularUpdating:
    """:class:`~inhouse.kinds.updating.UpdatingKind` for MLPs on numeric rows."""

    def check_settings(self, settings: CoordinatorSettings) -> None:
        """Every coordinator setting works for numeric rows (drift included)."""

    def train_candidate(self, run: RetrainRun) -> ModelVersion:
        """See :func:`inhouse.kinds.tabular.retrain.train_candidate`."""
        return train_candidate(run)

    def compress(self, run: RetrainRun, candidate: ModelVersion) -> ModelVersion | None:
        """Compress the candidate with the settings the champion was compressed with."""
        from inhouse.config import CompressionSettings, GateSettings
        from inhouse.kinds.tabular.compression import compress_version

        registry, cs = run.registry, run.settings
        champion = registry.get(cs.model, "champion")
        if champion.format == COMPRESSED_FORMAT:
            settings = CompressionSettings.model_validate(champion.lineage.get("compression", {}))
            gate = GateSettings.model_validate(champion.lineage.get("gate", {}).get("settings", {}))
        else:
            settings, gate = CompressionSettings(), GateSettings()
        if cs.dp:  # pruning fine-tunes without noise: DP versions are only quantized
            settings = settings.model_copy(update={"prune_amount": 0.0, "finetune_epochs": 0})
        summary = compress_version(
            registry=registry,
            engine=run.engine,
            model=cs.model,
            ref=str(candidate.version),
            settings=settings,
            gate=gate,
            promote=False,
        )
        return registry.get(cs.model, str(summary["version"]))

    def measure(
        self, run: RetrainRun, candidate: ModelVersion, compressed: ModelVersion | None
    ) -> Measured:
        """Accuracy and one-row latency (1 thread) on the test split, and the importances'
        rank correlation between the float candidate and the champion's float version."""
        registry, cs = run.registry, run.settings
        gated = compressed is not None and compressed.metrics.get("gate_passed")
        served = compressed if compressed is not None and gated else candidate
        champion = registry.get(cs.model, "champion")
        test = read_rows(run.engine, cs.dataset, split="test", up_to_id=run.job.up_to_id)
        served_module = load_module(registry, served)
        champion_module = load_module(registry, champion)
        probe = test.x[:1]
        return Measured(
            candidate_version=served.version,
            candidate_accuracy=accuracy(served_module, test.x, test.y) / 100.0,
            candidate_latency_ms=latency_ms(served_module, probe, threads=1),
            champion_version=champion.version,
            champion_accuracy=accuracy(champion_module, test.x, test.y) / 100.0,
            champion_latency_ms=latency_ms(champion_module, probe, threads=1),
            importance_spearman=_spearman(registry, float_version(registry, champion), candidate),
            extra={"test_rows": len(test)},
        )

    def stream_accuracy(
        self, window: StreamWindow, versions: list[ModelVersion]
    ) -> tuple[int, list[float]] | None:
        """Each version's accuracy on the window's rows."""
        rows = read_rows(window.engine, window.dataset, after_id=window.after_id)
        if len(rows) < window.min_rows:
            return None
        scores = []
        for info in versions:
            module = load_module(window.registry, info)
            with torch.inference_mode():  # compressed artifacts hold buffers, not parameters
                predicted = module.eval()(rows.x).argmax(dim=1)
            scores.append(float((predicted == rows.y).float().mean()))
        return len(rows), scores


UPDATING: UpdatingKind = TabularUpdating()
