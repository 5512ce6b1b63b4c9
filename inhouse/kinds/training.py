"""The training half of a model kind (``TrainingKind``): the Ray-free training pieces."""

from __future__ import annotations

from typing import Protocol


class TrainingKind(Protocol):
    """What ``jobs/`` and the coordinator call; one per kind (``kinds/<name>/training.py``)."""
