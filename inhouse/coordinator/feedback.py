"""Canary evidence from the stream: how the candidate and the champion score on the labelled
rows that arrived after the candidate's training window (tabular or text models alike).

Each version is loaded as its replicas serve it (a text adapter merged and quantized to int8),
so the comparison is between what clients actually got.
"""

from __future__ import annotations

import torch
from sqlalchemy import Engine

from inhouse.coordinator.canary import Feedback
from inhouse.data import read_rows
from inhouse.models.text import TEXT_KIND
from inhouse.registry import Registry


def _tabular_accuracies(
    registry: Registry, engine: Engine, model: str, dataset: str, after_id: int, versions: list[int]
) -> tuple[int, list[float]]:
    rows = read_rows(engine, dataset, after_id=after_id)
    scores = []
    for version in versions:
        module = registry.load_module(registry.get(model, str(version)))
        with torch.inference_mode():  # compressed artifacts hold buffers, not parameters
            predicted = module.eval()(rows.x).argmax(dim=1) if len(rows) else rows.y
        scores.append(float((predicted == rows.y).float().mean()) if len(rows) else 0.0)
    return len(rows), scores


def _text_accuracies(
    registry: Registry, engine: Engine, model: str, dataset: str, after_id: int, versions: list[int]
) -> tuple[int, list[float]]:
    from inhouse.data.text_import import read_text_rows
    from inhouse.models.text_serving import load_as_served

    rows = read_text_rows(engine, dataset, after_id=after_id)
    scores = [
        load_as_served(registry, registry.get(model, str(v))).accuracy(rows.texts, rows.labels)
        for v in versions
    ]
    return len(rows), scores


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
    from inhouse.data.stream import position

    if position(engine, dataset, after_id=after_id).max_row_id - after_id < min_rows:
        return None  # cheap pre-check: too few rows of any split arrived
    text = registry.get(model, str(champion)).spec.get("kind") == TEXT_KIND
    score = _text_accuracies if text else _tabular_accuracies
    count, (ours, theirs) = score(registry, engine, model, dataset, after_id, [candidate, champion])
    if count < min_rows:
        return None
    return Feedback(count, ours, theirs)
