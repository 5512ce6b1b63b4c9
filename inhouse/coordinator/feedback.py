"""Canary evidence from the stream: how the candidate and the champion score on the labelled
rows that arrived after the candidate's training window (any kind of model).

Each version is scored by its kind as its replicas serve it (for example a text adapter merged
and quantized to int8), so the comparison is between what clients actually got.
"""

from __future__ import annotations

from sqlalchemy import Engine

from inhouse.coordinator.canary import Feedback
from inhouse.kinds import kind_for_spec
from inhouse.kinds.updating import StreamWindow
from inhouse.registry import Registry


def feedback(
    registry: Registry,
    engine: Engine,
    *,
    model: str,
    dataset: str,
    after_id: int,
    candidate: int,
    champion: int,
    min_rows: int,
) -> Feedback | None:
    """Both versions' accuracy on rows with ``id > after_id``; None below ``min_rows`` rows."""
    versions = [registry.get(model, str(v)) for v in (candidate, champion)]
    window = StreamWindow(registry, engine, dataset, after_id, min_rows)
    scored = kind_for_spec(versions[1].spec).updating.stream_accuracy(window, versions)
    if scored is None:
        return None
    rows, (ours, theirs) = scored
    return Feedback(rows, ours, theirs)
