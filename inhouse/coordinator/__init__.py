"""The coordinator's Ray-free logic: settings, durable state, triggers, decisions, the gate.

The detached Ray actor (``actors/coordinator.py``) only wires :class:`Coordinator` to Ray; the
incremental retrain itself is ``jobs/retrain.py``.
"""

from inhouse.coordinator.decide import Decision, Policy, backoff_s, run_id
from inhouse.coordinator.gate import GateResult, Measured, judge
from inhouse.coordinator.settings import CoordinatorSettings
from inhouse.coordinator.state import CoordinatorState, CoordinatorStore, Event
from inhouse.coordinator.triggers import Drift, Observation, drift, fired, ks, psi

__all__ = [
    "CoordinatorSettings",
    "CoordinatorState",
    "CoordinatorStore",
    "Decision",
    "Drift",
    "Event",
    "GateResult",
    "Measured",
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
