"""The compressing half of a model kind (``CompressingKind``): a smaller copy, gated.

``inhouse compress`` submits ``python -m inhouse.jobs.compress``, whose Ray task finds the
kind of the version to compress (``kind_for_spec``) and calls its ``compressing.compress``;
the kind prunes and/or quantizes, measures the copy against its parent (its own figures: accuracy
for classifiers, held-out perplexity for generative models), registers the copy with lineage
naming the parent and moves ``champion`` when the gate passes and ``promote`` is set.

A kind without a ``compressing.py`` cannot be compressed: asking is a clear error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from inhouse.config import CompressionSettings, GateSettings
    from inhouse.registry import Registry


class CompressingKind(Protocol):
    """What ``jobs/compress.py`` calls; one per kind (``kinds/<name>/compressing.py``, whose
    ``COMPRESSING`` is one of these)."""

    def compress(
        self,
        *,
        registry: Registry,
        engine: Engine,
        model: str,
        ref: str,
        settings: CompressionSettings,
        gate: GateSettings,
        promote: bool,
    ) -> dict[str, Any]:
        """Compress ``model`` at ``ref`` and register the copy; the job's summary: at least
        ``model``, ``version``, ``parent_version``, ``promoted``, ``message`` and
        ``report_markdown``."""
        ...
