"""The ingress side of a canary: which requests go to the candidate, and what they did.

A daemon thread reads the active canaries of the served models every second
(:func:`~inhouse.canary.active_canaries`) and flushes the traffic counted since the last
flush (:mod:`inhouse.canary.traffic`), which the coordinator judges. Without a
canary nothing is counted and every request goes to the champion.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from typing import Any

from ray.serve.handle import DeploymentHandle
from sqlalchemy import Engine

from inhouse.canary import Canary, TrafficCounter, active_canaries, write_traffic
from inhouse.errors import InhouseError, UnavailableError
from inhouse.serve.http import refusal

REFRESH_S = 1.0
_log = logging.getLogger(__name__)


class CanaryRouter:
    """Chooses champion or canary per request, calls it, and counts each outcome."""

    def __init__(self, engine: Engine, models: list[str]) -> None:
        self._engine = engine
        self._models = list(models)
        self._canaries: dict[str, Canary] = {}
        self._counter = TrafficCounter()
        self._random = random.Random()
        self._refresh()
        threading.Thread(target=self._loop, daemon=True, name="canary-router").start()

    def _refresh(self) -> None:
        with contextlib.suppress(InhouseError):  # database briefly away: keep the last view
            self._canaries = active_canaries(self._engine, self._models)

    def _loop(self) -> None:
        while True:
            time.sleep(REFRESH_S)
            self.flush()
            self._refresh()

    def flush(self) -> None:
        counts = self._counter.drain()
        try:
            write_traffic(self._engine, counts)
        except InhouseError:  # lost counts only weaken the canary's evidence
            _log.warning("canary traffic of %d versions not recorded", len(counts))

    def choose(self, model: str) -> int | None:
        """The canary version this request should go to, or None for the champion."""
        canary = self._canaries.get(model)
        if canary is None or self._random.random() >= canary.share:
            return None
        return canary.version

    def record(self, model: str, version: int | None, started: float, *, error: bool) -> None:
        """Count one request that ``version`` answered (or failed) while a canary runs."""
        canary = self._canaries.get(model)
        if canary is None:
            return
        served = canary.champion_version if version is None else version
        self._counter.add(model, served, (time.perf_counter() - started) * 1000.0, error=error)

    async def predict(self, model: str, handle: DeploymentHandle, inputs: Any) -> dict[str, Any]:
        """The replica's answer from the champion (or, for a canary's share, the candidate);
        a failing canary is counted against it and the request answered by the champion."""
        candidate = self.choose(model)
        if candidate is not None:
            started = time.perf_counter()
            try:
                result: dict[str, Any] = await handle.predict.remote(inputs, candidate)
            except Exception:  # noqa: BLE001 - the champion answers; the canary is charged
                champion = await self._champion_predict(model, handle, inputs)
                self.record(model, candidate, started, error=True)
                return champion
            self.record(model, int(result["version"]), started, error=False)
            return result
        return await self._champion_predict(model, handle, inputs)

    async def _champion_predict(
        self, model: str, handle: DeploymentHandle, inputs: Any
    ) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            result: dict[str, Any] = await handle.predict.remote(inputs)
        except Exception as exc:  # noqa: BLE001 - a replica crash is a 503, never a 500
            refused = refusal(exc)
            if refused is not None:  # the replica refused the input
                raise refused from None
            self.record(model, None, started, error=True)
            raise UnavailableError(f"model replica failed: {type(exc).__name__}") from exc
        self.record(model, int(result["version"]), started, error=False)
        return result
