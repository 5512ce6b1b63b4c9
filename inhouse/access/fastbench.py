"""Timing of the serving fast path against the full check, for ``make bench``."""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from typing import Any

from inhouse.access.auditqueue import AuditQueue
from inhouse.access.fastpath import RequestAuthorizer
from inhouse.access.service import AccessService
from inhouse.errors import ConflictError


def measure(service: AccessService, n: int = 2000) -> dict[str, Any]:
    """Time ``n`` cached :meth:`RequestAuthorizer.authorize` calls against ``n`` checks.

    Creates (or reuses) the principal ``bench-fastpath`` with ``model:predict`` on
    ``bench`` and a one-hour token in ``service``'s database, and appends about ``3 n`` audit
    entries there: run it on a scratch database. Times are microseconds per call in this
    thread; ``flush_us_per_entry`` is the background cost of the batched audit write, per
    entry, for one batch of ``n - 1``.
    """
    for setup in (
        lambda: service.create_principal(name="bench-fastpath", actor="bench"),
        lambda: service.grant(principal="bench-fastpath", action="model:predict", resource="bench"),
    ):
        try:
            setup()
        except ConflictError:
            pass  # already there from an earlier run
    token = service.issue_token(
        principal="bench-fastpath", expires_in=timedelta(hours=1), actor="bench"
    ).token
    header, kw = f"Bearer {token}", {"action": "model:predict", "resource": "bench"}

    def timed(call: Any) -> list[float]:
        out = []
        for i in range(n):
            start = time.perf_counter_ns()
            call(header, request_id=f"bench-{i}", **kw)
            out.append((time.perf_counter_ns() - start) / 1000)
        return out

    check = timed(service.check)
    # The authorizer as served: its flush thread runs (and competes for the GIL) meanwhile.
    with RequestAuthorizer(service) as fast:
        fast.authorize(header, request_id="bench-warm", **kw)
        cached = timed(fast.authorize)
    # The background cost per entry: one batch of n - 1, timed apart.
    queue = AuditQueue(
        service.audit, clock=service.clock, flush_interval_s=3600, max_pending=n, flush_at=n
    )
    for i in range(n - 1):
        queue.put("bench-fastpath", "model:predict", "bench", "allow", f"b-{i}", "token=x")
    start = time.perf_counter()
    written = queue.flush()
    flush_s = time.perf_counter() - start
    queue.close()
    result: dict[str, Any] = {"n": n}
    for name, samples in (("cached", cached), ("check", check)):
        cuts = statistics.quantiles(samples, n=100)
        result[f"{name}_p50_us"] = round(statistics.median(samples), 1)
        result[f"{name}_p99_us"] = round(cuts[98], 1)
    result["speedup_p50"] = round(result["check_p50_us"] / result["cached_p50_us"], 1)
    result["flush_us_per_entry"] = round(flush_s * 1e6 / max(written, 1), 1)
    return result
