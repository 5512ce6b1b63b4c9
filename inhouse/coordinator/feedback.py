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
    if versions[1].spec.get("kind") == TEXT_KIND:
        from inhouse.data.text_import import read_text_rows
        from inhouse.kinds.text.served import load_as_served

        texts = read_text_rows(engine, dataset, after_id=after_id)
        if len(texts) < min_rows:
            return None
        ours, theirs = (
            load_as_served(registry, v).accuracy(texts.texts, texts.labels) for v in versions
        )
        return Feedback(len(texts), ours, theirs)
    rows = read_rows(engine, dataset, after_id=after_id)
    if len(rows) < min_rows:
        return None
    scores = []
    for info in versions:
        module = registry.load_module(info)
        with torch.inference_mode():  # compressed artifacts hold buffers, not parameters
            predicted = module.eval()(rows.x).argmax(dim=1)
        scores.append(float((predicted == rows.y).float().mean()))
    return Feedback(len(rows), scores[0], scores[1])
