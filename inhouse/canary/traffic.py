"""Canary traffic as the ingress sees it: requests, errors and a latency histogram per served
version, flushed to the database every second so the coordinator can judge a canary.

The ingress counts only while a canary of the model is active (:class:`TrafficCounter`); each
flush appends one row per (model, version) with the deltas, so several ingress replicas add
up. :func:`read_traffic` sums the rows of one version since the canary started. This module
owns the ``canary_traffic`` table: the ingress writes it through :func:`write_traffic`, the
coordinator reads it through :func:`read_traffic`.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import JSON, Engine, Float, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from inhouse.db import Base, BigId, session_scope

# Upper edges of the latency buckets in milliseconds; the last bucket is everything above.
LATENCY_EDGES_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


class TrafficRecord(Base):
    """Requests one ingress replica sent to one version during one flush interval."""

    __tablename__ = "canary_traffic"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    at: Mapped[float] = mapped_column(Float, index=True)
    requests: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    latency_ms_sum: Mapped[float] = mapped_column(Float)
    buckets: Mapped[list[int]] = mapped_column(JSON)

    __table_args__ = {"sqlite_autoincrement": True}


@dataclass
class Traffic:
    """Requests, errors and latency histogram of one version."""

    requests: int = 0
    errors: int = 0
    latency_ms_sum: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_EDGES_MS) + 1))

    def add(self, latency_ms: float, *, error: bool) -> None:
        self.requests += 1
        self.errors += int(error)
        self.latency_ms_sum += latency_ms
        self.buckets[bisect.bisect_left(LATENCY_EDGES_MS, latency_ms)] += 1

    def merge(self, other: Traffic) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.latency_ms_sum += other.latency_ms_sum
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def quantile_ms(self, q: float) -> float:
        """The upper bucket edge below which a share ``q`` of the requests fell."""
        if not self.requests:
            return 0.0
        needed, seen = q * self.requests, 0
        for index, count in enumerate(self.buckets):
            seen += count
            if seen >= needed:
                edges = LATENCY_EDGES_MS
                return float(edges[index] if index < len(edges) else 2 * edges[-1])
        return float(2 * LATENCY_EDGES_MS[-1])

    def summary(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 5),
            "p95_ms": self.quantile_ms(0.95),
            "mean_ms": round(self.latency_ms_sum / self.requests, 3) if self.requests else 0.0,
        }


class TrafficCounter:
    """Thread-safe per-(model, version) counters that :meth:`drain` hands to :func:`write`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], Traffic] = {}

    def add(self, model: str, version: int, latency_ms: float, *, error: bool) -> None:
        with self._lock:
            self._counts.setdefault((model, version), Traffic()).add(latency_ms, error=error)

    def drain(self) -> dict[tuple[str, int], Traffic]:
        with self._lock:
            counts, self._counts = self._counts, {}
        return counts


def write_traffic(engine: Engine, counts: dict[tuple[str, int], Traffic]) -> None:
    """Append one row per counted (model, version)."""
    if not counts:
        return
    now = time.time()
    with session_scope(engine) as session:
        for (model, version), t in counts.items():
            session.add(
                TrafficRecord(
                    model=model,
                    version=version,
                    at=now,
                    requests=t.requests,
                    errors=t.errors,
                    latency_ms_sum=t.latency_ms_sum,
                    buckets=list(t.buckets),
                )
            )


def read_traffic(engine: Engine, model: str, version: int, *, since: float) -> Traffic:
    """All traffic of ``model`` version ``version`` flushed at or after ``since``."""
    total = Traffic()
    with session_scope(engine) as session:
        rows = session.scalars(
            select(TrafficRecord).where(
                TrafficRecord.model == model,
                TrafficRecord.version == version,
                TrafficRecord.at >= since,
            )
        )
        for row in rows:
            total.merge(Traffic(row.requests, row.errors, row.latency_ms_sum, list(row.buckets)))
    return total
