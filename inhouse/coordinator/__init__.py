"""The coordinator's Ray-free logic: durable state, triggers, decisions, the gate (its settings
are ``inhouse.config.CoordinatorSettings``).

The detached Ray actor (``actors/coordinator.py``) only wires :class:`Coordinator` to Ray; the
incremental retrain is :mod:`inhouse.coordinator.retrain`, which leaves what differs per model
kind to the kind's updating half (:mod:`inhouse.kinds.updating`).

The names below are imported on first use: every database open registers the state tables
(:mod:`inhouse.coordinator.state`), and that must not load numpy for the drift tests.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inhouse.coordinator.decide import Decision, Policy, backoff_s, run_id
    from inhouse.coordinator.gate import GateResult, judge
    from inhouse.coordinator.state import CoordinatorState, CoordinatorStore, Event
    from inhouse.coordinator.triggers import Drift, Observation, drift, fired, ks, psi

# No name here is also a submodule's: importing a submodule binds it on this package.
_WHERE = {
    **dict.fromkeys(("Decision", "Policy", "backoff_s", "run_id"), "inhouse.coordinator.decide"),
    **dict.fromkeys(("GateResult", "judge"), "inhouse.coordinator.gate"),
    **dict.fromkeys(("CoordinatorState", "CoordinatorStore", "Event"), "inhouse.coordinator.state"),
    **dict.fromkeys(
        ("Drift", "Observation", "drift", "fired", "ks", "psi"), "inhouse.coordinator.triggers"
    ),
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'inhouse.coordinator' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "CoordinatorState",
    "CoordinatorStore",
    "Decision",
    "Drift",
    "Event",
    "GateResult",
    "Observation",
    "Policy",
    "backoff_s",
    "drift",
    "fired",
    "judge",
    "ks",
    "psi",
    "run_id",
]
