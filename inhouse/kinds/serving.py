"""The serving half of a model kind (``ServingKind``): load, parse, predict, explain."""

from __future__ import annotations

from typing import Protocol


class ServingKind(Protocol):
    """What ``serve/`` calls; one implementation per kind (``inhouse/kinds/<name>/serving.py``)."""
