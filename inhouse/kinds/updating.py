"""The updating half of a model kind (``UpdatingKind``): retrain, measure for the gate, compress."""

from __future__ import annotations

from typing import Protocol


class UpdatingKind(Protocol):
    """What retraining and the coordinator call; one per kind (``kinds/<name>/updating.py``)."""
