"""HTTP load for the Serve benchmark: interleaved sequential latency, rotating throughput."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx


def sequential_ms(
    client: httpx.Client, targets: dict[str, tuple[str, bytes | None]], *, n: int,
    warmup: int = 30,
) -> dict[str, list[float]]:
    """Milliseconds of ``n`` back-to-back requests per target on one keep-alive connection.

    ``targets`` maps a label to ``(path, body)``; ``body=None`` sends a GET. The targets take
    turns request by request, so a change in the (shared) machine's load hits all alike.
    Any non-200 answer raises: the latency of errors is meaningless.
    """
    headers = {"content-type": "application/json"}

    def once(path: str, body: bytes | None) -> float:
        started = time.perf_counter()
        if body is None:
            response = client.get(path)
        else:
            response = client.post(path, content=body, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000.0
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:200]}")
        return elapsed

    times: dict[str, list[float]] = {label: [] for label in targets}
    for i in range(warmup + n):
        for label, (path, body) in targets.items():
            elapsed = once(path, body)
            if i >= warmup:
                times[label].append(elapsed)
    return times


@dataclass(frozen=True)
class Throughput:
    requests_per_s: float
    ok: int
    errors: int
    p50_ms: float
    p99_ms: float
    seconds: float
    error_kinds: dict[str, int]


async def _slice(
    client: httpx.AsyncClient, path: str, body: bytes, *, clients: int, seconds: float,
    warmup_s: float,
) -> tuple[int, int, list[float], float, dict[str, int]]:
    """``clients`` closed-loop workers on one target: ok, errors, latencies (ms), seconds and
    error kinds (HTTP status or exception name)."""
    headers = {"content-type": "application/json"}
    latencies: list[float] = []
    counts = {"ok": 0, "errors": 0}
    kinds: dict[str, int] = {}

    async def worker(until: float, record: bool) -> None:
        while time.perf_counter() < until:
            started = time.perf_counter()
            try:
                response = await client.post(path, content=body, headers=headers)
                kind = "ok" if response.status_code == 200 else f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                kind = type(exc).__name__
            if record:
                counts["ok" if kind == "ok" else "errors"] += 1
                if kind == "ok":
                    latencies.append((time.perf_counter() - started) * 1000.0)
                else:
                    kinds[kind] = kinds.get(kind, 0) + 1

    await asyncio.gather(*(worker(time.perf_counter() + warmup_s, False) for _ in range(clients)))
    started = time.perf_counter()
    await asyncio.gather(*(worker(started + seconds, True) for _ in range(clients)))
    return counts["ok"], counts["errors"], latencies, time.perf_counter() - started, kinds


async def _rotate(
    base_url: str, targets: dict[str, tuple[str, bytes]], *, clients: int, seconds: float,
    rounds: int, warmup_s: float, headers: dict[str, str],
) -> dict[str, Throughput]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    totals: dict[str, tuple[int, int, list[float], float]] = {
        label: (0, 0, [], 0.0) for label in targets
    }
    kinds: dict[str, dict[str, int]] = {label: {} for label in targets}
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits,
                                 headers=headers) as client:
        for _ in range(rounds):
            for label, (path, body) in targets.items():
                ok, errors, latencies, elapsed, new_kinds = await _slice(
                    client, path, body, clients=clients, seconds=seconds / rounds,
                    warmup_s=warmup_s)
                t_ok, t_errors, t_latencies, t_elapsed = totals[label]
                totals[label] = (t_ok + ok, t_errors + errors, t_latencies + latencies,
                                 t_elapsed + elapsed)
                for kind, count in new_kinds.items():
                    kinds[label][kind] = kinds[label].get(kind, 0) + count
    results = {}
    for label, (ok, errors, latencies, elapsed) in totals.items():
        latencies.sort()

        def pct(q: float, values: list[float] = latencies) -> float:
            return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0

        results[label] = Throughput(requests_per_s=ok / elapsed, ok=ok, errors=errors,
                                    p50_ms=pct(0.50), p99_ms=pct(0.99), seconds=elapsed,
                                    error_kinds=kinds[label])
    return results


def throughput(
    base_url: str,
    targets: dict[str, tuple[str, bytes]],
    *,
    clients: int = 32,
    seconds: float = 10.0,
    rounds: int = 4,
    warmup_s: float = 0.5,
    headers: dict[str, str] | None = None,
) -> dict[str, Throughput]:
    """Closed-loop load: ``clients`` concurrent keep-alive clients (asyncio + httpx) posting
    to one target at a time. Each target gets ``seconds`` of measured load in ``rounds``
    slices (each after ``warmup_s`` untimed), targets taking turns so that a change in the
    machine's load hits all alike. Counts successes and errors (non-200 or transport)."""
    return asyncio.run(_rotate(base_url, targets, clients=clients, seconds=seconds,
                               rounds=rounds, warmup_s=warmup_s, headers=headers or {}))
