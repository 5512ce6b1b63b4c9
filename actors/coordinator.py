"""The coordinator as a detached, named Ray actor: a thin loop around the plain Coordinator.

One actor per model, named ``coordinator-<model>`` in the ``inhouse`` namespace (visible in
the Ray dashboard's Actors tab), ``max_restarts=-1``: Ray restarts it after a crash or a
kill, and it resumes from the state committed in the database (watermark, job in flight).
The loop polls the data stream (SQLite or PostgreSQL, by ``max(id)``; no LISTEN/NOTIFY) every
``poll_s`` seconds, or at once after :meth:`CoordinatorActor.wake`. Retrains run in-process
(:func:`inhouse.coordinator.retrain.run_retrain`); custom metrics go to Prometheus through
``ray.util.metrics``.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import traceback
from typing import Any

import ray
from ray.util.metrics import Counter, Gauge

from inhouse import services
from inhouse.config import CoordinatorSettings, Settings, SettingsPayload, settings_payload
from inhouse.coordinator import CoordinatorStore, backoff_s
from inhouse.coordinator.retrain import run_retrain
from inhouse.coordinator.service import Coordinator, StepReport

NAMESPACE = "inhouse"
log = logging.getLogger(__name__)


def actor_name(model: str) -> str:
    return f"coordinator-{model}"


class _Metrics:
    """The actor's Prometheus series, tagged by model."""

    def __init__(self, model: str) -> None:
        tags = ("model",)
        self.tags = {"model": model}
        self.rows = Counter(
            "inhouse_coordinator_rows_ingested", "Training rows consumed.", tag_keys=tags
        )
        self.retrains = Counter(
            "inhouse_coordinator_retrains", "Retrains run, by outcome.", tag_keys=(*tags, "outcome")
        )
        self.promotions = Counter(
            "inhouse_coordinator_promotions", "Candidates promoted.", tag_keys=tags
        )
        self.rollbacks = Counter("inhouse_coordinator_rollbacks", "Rollbacks seen.", tag_keys=tags)
        self.epsilon = Counter(
            "inhouse_coordinator_epsilon_spent", "DP epsilon of retrains.", tag_keys=tags
        )
        self.watermark = Gauge(
            "inhouse_coordinator_watermark", "Last row id consumed.", tag_keys=tags
        )
        self.canary_error_rate = Gauge(
            "inhouse_coordinator_canary_error_rate",
            "Failed share of the canary's requests when it was judged.",
            tag_keys=tags,
        )

    def record(self, report: StepReport, watermark: int) -> None:
        kinds = [e.kind for e in report.events]
        self.watermark.set(watermark, tags=self.tags)
        if report.measured is not None or report.action == "failed":
            self.retrains.inc(1, tags={**self.tags, "outcome": report.action})
        if report.measured is not None:
            rows = int(report.measured.extra.get("new_train_rows", 0))
            epsilon = float(report.measured.extra.get("epsilon") or 0.0)
            if rows > 0:  # Counter.inc raises on 0: a non-DP retrain would fail the step
                self.rows.inc(rows, tags=self.tags)
            if epsilon > 0:
                self.epsilon.inc(epsilon, tags=self.tags)
        if "promoted" in kinds:
            self.promotions.inc(1, tags=self.tags)
        if "champion_changed" in kinds or "canary_rolled_back" in kinds:
            self.rollbacks.inc(1, tags=self.tags)
        canary = report.figures.get("candidate")
        if canary is not None:
            self.canary_error_rate.set(float(canary["error_rate"]), tags=self.tags)


@ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0)
class CoordinatorActor:
    """Runs :class:`Coordinator` steps for one model until its state says ``stopped``."""

    def __init__(self, model: str, payload: SettingsPayload) -> None:
        settings = payload.load()
        engine = services.engine(settings)
        state = CoordinatorStore(engine).load(model)
        self.settings = CoordinatorSettings.parse(state.settings)
        self.coordinator = Coordinator(
            engine=engine,
            registry=services.registry(settings),
            settings=self.settings,
            retrain=functools.partial(run_retrain, settings),
        )
        self.metrics = _Metrics(model)
        self.started_at = time.time()
        self.steps = 0
        self.last: dict[str, Any] = {}
        self.errors = 0
        self.backing_off = False
        # Step errors (database away) back off from poll_s, doubling, to at most this.
        self._max_wait = max(self.settings.poll_s, min(self.settings.backoff_max_s, 30.0))
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="coordinator", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        failed_in_row = 0
        while True:
            wait = self.settings.poll_s
            try:
                report = self.coordinator.step()
                state = self.coordinator.store.load(self.settings.model)
                self.metrics.record(report, state.watermark)
                self.last = {"action": report.action, "reason": report.reason, "at": time.time()}
                failed_in_row, self.backing_off = 0, False
                if report.action == "stop":
                    return
            except Exception as exc:  # e.g. the database is away: back off; the state is durable
                self.errors += 1
                failed_in_row += 1
                wait = backoff_s(failed_in_row, base_s=self.settings.poll_s, max_s=self._max_wait)
                self.backing_off = True
                self.last = {
                    "action": "backing_off",
                    "reason": f"{type(exc).__name__}: {str(exc)[:300]}; retry in {wait:.1f} s",
                    "retry_in_s": wait,
                    "failures_in_row": failed_in_row,
                    "at": time.time(),
                    "trace": traceback.format_exc(limit=3),
                }
                log.warning("coordinator step failed (%s in a row): %s", failed_in_row, exc)
            self.steps += 1
            self._wake.wait(timeout=wait)
            self._wake.clear()

    def wake(self) -> bool:
        """Poll now instead of at the next interval (after a manual retrain request)."""
        self._wake.set()
        return True

    def info(self) -> dict[str, Any]:
        """Liveness and the last step, for ``inhouse coordinator status``."""
        return {
            "model": self.settings.model,
            "pid": os.getpid(),
            "running": self._thread.is_alive(),
            "started_at": self.started_at,
            "steps": self.steps,
            "errors": self.errors,
            "backing_off": self.backing_off,
            "last": self.last,
        }


def start_actor(settings: Settings, model: str) -> Any:
    """Create (or find) the detached actor of ``model``; the caller is a connected driver."""
    return CoordinatorActor.options(  # type: ignore[attr-defined]
        name=actor_name(model),
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
    ).remote(model, settings_payload(settings))


def find_actor(model: str) -> Any | None:
    """The running actor of ``model``, or None."""
    try:
        return ray.get_actor(actor_name(model), namespace=NAMESPACE)
    except ValueError:
        return None
