"""Canary state shared by the coordinator and the ingress, Ray-free.

The coordinator decides (:mod:`inhouse.coordinator.canary` judges a canary) and records the
active canary here; the ingress (``serve/canary_router.py``) reads it to route requests and
writes what those requests did (:mod:`inhouse.canary.traffic`), which the coordinator reads
back. Neither side imports the other.
"""

from inhouse.canary.active import Canary, active_canaries, load_canary, save_canary
from inhouse.canary.traffic import (
    LATENCY_EDGES_MS,
    Traffic,
    TrafficCounter,
    read_traffic,
    write_traffic,
)

__all__ = [
    "LATENCY_EDGES_MS",
    "Canary",
    "Traffic",
    "TrafficCounter",
    "active_canaries",
    "load_canary",
    "read_traffic",
    "save_canary",
    "write_traffic",
]
