"""Sustained load and a replica killed under it: the Serve app's availability, measured.

64 closed-loop clients post single-row v2 infer requests while 8 post ``:explain`` (IG), all at
once, for 60 s (``--quick``: 10 s), against the app with model-replica autoscaling on; then the
same load runs again while one model replica is killed (``ray.kill``). Reported: throughput,
p50/p95/p99 latency, 5xx and connection errors, failed requests around the kill, the time to
recover (last failure, and replicas back to RUNNING) and the replica counts over time
(``serve.status()``). The load generator (:func:`run_load`) and the replica helpers are also
used by ``tests/reliability``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from inhouse.benchmarks.common import free_port, local_ray, percentile
from inhouse.benchmarks.report import row

NAME = "load"
MODEL = "digits"
CONNECTION_ERRORS = (httpx.ConnectError, httpx.ReadError, httpx.WriteError,
                     httpx.RemoteProtocolError)


@dataclass(frozen=True)
class Target:
    """``clients`` closed-loop clients posting ``body`` to ``path``."""

    label: str
    path: str
    body: bytes
    clients: int


@dataclass
class TargetStats:
    """What one target's clients saw during the measured window."""

    requests: int = 0
    ok: int = 0
    server_errors: int = 0  # 5xx
    client_errors: int = 0  # 4xx (a load test sends only valid requests: should be 0)
    connection_errors: int = 0
    timeouts: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    kinds: dict[str, int] = field(default_factory=dict)
    failures_at: list[float] = field(default_factory=list, repr=False)  # s since start

    @property
    def failed(self) -> int:
        return self.requests - self.ok

    def summary(self, seconds: float) -> dict[str, Any]:
        lat = self.latencies_ms or [0.0]
        return {
            "requests": self.requests, "ok": self.ok, "failed": self.failed,
            "server_errors": self.server_errors, "client_errors": self.client_errors,
            "connection_errors": self.connection_errors, "timeouts": self.timeouts,
            "requests_per_s": round(self.ok / seconds, 1),
            "p50_ms": round(percentile(lat, 50), 1), "p95_ms": round(percentile(lat, 95), 1),
            "p99_ms": round(percentile(lat, 99), 1), "kinds": dict(self.kinds),
        }


@dataclass
class LoadReport:
    seconds: float
    targets: dict[str, TargetStats]
    replicas: list[tuple[float, dict[str, int]]]  # (s since start, state -> count)
    events: dict[str, float]  # name -> s since start (e.g. "kill")
    started: float = 0.0  # time.perf_counter() at the start of the measured window

    def summary(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "targets": {k: v.summary(self.seconds) for k, v in self.targets.items()},
            "replicas": [(round(t, 1), states) for t, states in self.replicas],
            "events": {k: round(v, 2) for k, v in self.events.items()},
        }


def _classify(stats: TargetStats, started: float, begun: float, response: Any) -> None:
    stats.requests += 1
    if isinstance(response, httpx.Response):
        status = response.status_code
        if status == 200:
            stats.ok += 1
            stats.latencies_ms.append((time.perf_counter() - begun) * 1000.0)
            return
        kind = f"HTTP {status}"
        if status >= 500:
            stats.server_errors += 1
        else:
            stats.client_errors += 1
    else:
        kind = type(response).__name__
        if isinstance(response, httpx.TimeoutException):
            stats.timeouts += 1
        else:
            stats.connection_errors += 1
    stats.kinds[kind] = stats.kinds.get(kind, 0) + 1
    stats.failures_at.append(begun - started)


async def _load(
    base_url: str, targets: list[Target], *, seconds: float, warmup_s: float,
    headers: dict[str, str], timeout_s: float,
    actions: list[tuple[float, str, Callable[[], Any]]],
    sampler: Callable[[], dict[str, int]] | None, sample_every_s: float,
) -> LoadReport:
    total = sum(t.clients for t in targets)
    limits = httpx.Limits(max_connections=total, max_keepalive_connections=total)
    stats = {t.label: TargetStats() for t in targets}
    replicas: list[tuple[float, dict[str, int]]] = []
    events: dict[str, float] = {}
    send_headers = {"content-type": "application/json", **headers}
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits,
                                 headers=send_headers) as client:

        async def worker(target: Target, until: float, started: float, record: bool) -> None:
            while time.perf_counter() < until:
                begun = time.perf_counter()
                try:
                    response: Any = await client.post(target.path, content=target.body)
                except httpx.HTTPError as exc:
                    response = exc
                if record:
                    _classify(stats[target.label], started, begun, response)

        async def act(at: float, name: str, call: Callable[[], Any], started: float) -> None:
            await asyncio.sleep(max(0.0, started + at - time.perf_counter()))
            events[name] = time.perf_counter() - started
            await asyncio.to_thread(call)
            events[name + "_done"] = time.perf_counter() - started

        async def sample(until: float, started: float) -> None:
            while sampler is not None and time.perf_counter() < until:
                states = await asyncio.to_thread(sampler)
                replicas.append((time.perf_counter() - started, states))
                await asyncio.sleep(sample_every_s)

        warm_until = time.perf_counter() + warmup_s
        await asyncio.gather(*(worker(t, warm_until, 0.0, False)
                               for t in targets for _ in range(t.clients)))
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(
            *(worker(t, until, started, True) for t in targets for _ in range(t.clients)),
            *(act(at, name, call, started) for at, name, call in actions),
            sample(until, started),
        )
        elapsed = time.perf_counter() - started
    return LoadReport(elapsed, stats, replicas, events, started)


def run_load(
    base_url: str,
    targets: list[Target],
    *,
    seconds: float,
    warmup_s: float = 1.0,
    headers: dict[str, str] | None = None,
    timeout_s: float = 30.0,
    actions: Sequence[tuple[float, str, Callable[[], Any]]] = (),
    sampler: Callable[[], dict[str, int]] | None = None,
    sample_every_s: float = 1.0,
) -> LoadReport:
    """Closed-loop load (asyncio + httpx, keep-alive) on every target at once.

    ``actions`` are ``(at_s, name, call)``: ``call`` runs in a thread ``at_s`` seconds into the
    measured window (a fault injection); its start and end times land in ``events``.
    ``sampler`` (e.g. :func:`replica_states`) is polled every ``sample_every_s``.
    """
    return asyncio.run(_load(base_url, targets, seconds=seconds, warmup_s=warmup_s,
                             headers=headers or {}, timeout_s=timeout_s, actions=list(actions),
                             sampler=sampler, sample_every_s=sample_every_s))


def replica_states(app: str, deployment: str) -> dict[str, int]:
    """``serve.status()`` of one deployment: replica state -> count (e.g. RUNNING: 2)."""
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None or deployment not in status.deployments:
        return {}
    return {str(getattr(k, "value", k)): int(v)
            for k, v in status.deployments[deployment].replica_states.items()}


def replica_names(app: str, deployment: str) -> list[str]:
    """Names of the live replica actors of ``deployment`` (namespace ``serve``)."""
    import ray

    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["namespace"] == "serve" and a["name"].startswith(prefix))


def kill_one_replica(app: str, deployment: str) -> str:
    """``ray.kill`` one replica actor of ``deployment`` (no restart: Serve must replace it)."""
    import ray

    name = replica_names(app, deployment)[0]
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    return name


@contextlib.contextmanager
def settings_env(**values: Any) -> Iterator[None]:
    """Set ``INHOUSE_<KEY>`` variables (``serve__min_replicas=2``) for a block: ``build_app``
    reads the platform settings from the environment of the driver."""
    names = {f"INHOUSE_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v)
             for k, v in values.items()}
    previous = {k: os.environ.get(k) for k in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


AUTOSCALING = {  # replicas the load tests run with; num_replicas if autoscaling is absent
    "serve__autoscaling": True, "serve__min_replicas": 2, "serve__max_replicas": 3,
    "serve__target_ongoing_requests": 16, "serve__upscale_delay_s": 3,
    "serve__num_replicas": 2,
}


def autoscaling_env() -> dict[str, Any]:
    """:data:`AUTOSCALING`, less the fields this checkout's ``ServeSettings`` lacks."""
    from inhouse.config import ServeSettings

    return {k: v for k, v in AUTOSCALING.items()
            if k.removeprefix("serve__") in ServeSettings.model_fields}


def infer_body(row_values: list[float]) -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": [1, len(row_values)],
                                   "datatype": "FP32", "data": row_values}]}).encode()


def explain_body(row_values: list[float], n_steps: int = 16) -> bytes:
    return json.dumps({"instances": [row_values], "method": "ig",
                       "options": {"n_steps": n_steps}}).encode()


def wait_replicas(
    report: LoadReport, sampler: Callable[[], dict[str, int]], *, running: int,
    timeout_s: float = 120.0, every_s: float = 0.5,
) -> None:
    """Keep sampling after the load until ``running`` replicas run and none other is listed,
    appending to ``report.replicas`` (so recovery is measured even if it outlasts the load)."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        states = sampler()
        report.replicas.append((time.perf_counter() - report.started, states))
        if _all_running(states, running):
            return
        time.sleep(every_s)


def _all_running(states: dict[str, int], running: int) -> bool:
    return states.get("RUNNING", 0) >= running and sum(states.values()) == states["RUNNING"]


def kill_recovery(report: LoadReport, *, running: int) -> dict[str, Any]:
    """Failed requests after the kill, the last failure, when Serve saw the replica gone and
    when ``running`` replicas ran again (None: not seen in the samples)."""
    kill = report.events["kill"]
    stats = report.targets["predict"]
    after = [t for t in stats.failures_at if t >= kill]
    # serve.status() lags the kill: recovery is the first all-RUNNING sample after the dip.
    dip = next((t for t, states in report.replicas
                if t > kill and not _all_running(states, running)), None)
    back = None if dip is None else next(
        (t for t, states in report.replicas if t > dip and _all_running(states, running)), None)
    return {
        "failed": stats.failed, "requests": stats.requests,
        "failed_pct": round(100.0 * stats.failed / max(1, stats.requests), 3),
        "last_failure_after_kill_s": round(after[-1] - kill, 2) if after else 0.0,
        "replica_loss_seen_after_s": None if dip is None else round(dip - kill, 1),
        "replicas_running_again_after_s": None if back is None else round(back - kill, 1),
        "kinds": dict(stats.kinds),
    }


def run(quick: bool) -> list[dict[str, Any]]:
    """64 predict + 8 explain clients, then the same with a replica killed a third of the way."""
    from inhouse.benchmarks.bench_serve import _register

    seconds, kill_seconds = (10.0, 20.0) if quick else (60.0, 30.0)
    with tempfile.TemporaryDirectory(prefix="inhouse-bench-load-") as tmp:
        home = Path(tmp)
        _model, _spec, x, token = _register(home, epochs=5)
        values = x.ravel().tolist()
        targets = [Target("predict", f"/v2/models/{MODEL}/infer", infer_body(values), 64),
                   Target("explain", f"/v1/models/{MODEL}:explain", explain_body(values), 8)]
        port = free_port(8013)
        auth = {"Authorization": f"Bearer {token}"}
        with local_ray(num_cpus=4):
            from ray import serve

            from inhouse.config import ServeArgs
            from inhouse.serve.app import build_app

            serve.start(http_options={"host": "127.0.0.1", "port": port})
            try:
                with settings_env(**autoscaling_env()):
                    serve.run(build_app(ServeArgs(models=[MODEL], home=str(home))),
                              name="inhouse", route_prefix="/")
                deployment = f"model-{MODEL}"
                sampler = lambda: replica_states("inhouse", deployment)  # noqa: E731
                url = f"http://127.0.0.1:{port}"
                steady = run_load(url, targets, seconds=seconds, headers=auth, sampler=sampler)
                killed = run_load(
                    url, targets[:1], seconds=kill_seconds, headers=auth, sampler=sampler,
                    sample_every_s=0.5,
                    actions=[(kill_seconds / 3, "kill",
                              lambda: kill_one_replica("inhouse", deployment))],
                )
                wait_replicas(killed, sampler, running=2)
            finally:
                serve.shutdown()
    return _rows(steady, killed, quick)


def _rows(steady: LoadReport, killed: LoadReport, quick: bool) -> list[dict[str, Any]]:
    s = steady.summary()["targets"]
    p, e = s["predict"], s["explain"]
    replicas = [states.get("RUNNING", 0) for _, states in steady.replicas] or [0]
    recovery = kill_recovery(killed, running=2)
    errors = p["server_errors"] + e["server_errors"]
    conn = p["connection_errors"] + e["connection_errors"] + p["timeouts"] + e["timeouts"]
    note = (f"{steady.seconds:.0f} s, 64 predict + 8 explain clients at once, loaded 2-core box"
            f"{' (quick)' if quick else ''}")
    back = recovery["replicas_running_again_after_s"]
    return [
        row(NAME, "predict req/s under mixed load", p["requests_per_s"], None,
            notes=f"{note}; p50/p95/p99 {p['p50_ms']}/{p['p95_ms']}/{p['p99_ms']} ms"),
        row(NAME, "explain req/s under mixed load", e["requests_per_s"], None,
            notes=f"IG 16 steps; p50/p95/p99 {e['p50_ms']}/{e['p95_ms']}/{e['p99_ms']} ms"),
        row(NAME, "5xx / connection errors under load", errors, conn,
            target=("both", "==", 0, ""),
            notes=f"kinds: predict {p['kinds'] or 'none'}, explain {e['kinds'] or 'none'}; "
            f"model replicas RUNNING min/max {min(replicas)}/{max(replicas)} "
            "(autoscaling 2..3)"),
        row(NAME, "failed % with a replica killed", recovery["failed_pct"], None,
            target=("ours", "<=", 0.5, "%"),
            notes=f"{recovery['failed']} of {recovery['requests']} predict requests, 64 clients, "
            f"{killed.seconds:.0f} s, ray.kill at {killed.events['kill']:.1f} s; "
            f"kinds {recovery['kinds'] or 'none'}"),
        row(NAME, "recovery s after a replica kill", back if back is not None else 999.0,
            recovery["last_failure_after_kill_s"], target=("ours", "<=", 30.0, "s"),
            notes="ours: replicas all RUNNING again (serve.status); baseline column: last "
            "failed request after the kill"),
    ]

