"""``make demo``, second act: new rows arrive and the coordinator keeps the model fresh.

It starts the model's coordinator actor (``inhouse coordinator start``), appends simulated new
rows (noisy copies of training digits, as another system's INSERTs would), keeps a client
calling the endpoint, and narrates the coordinator's history as it happens: retrain started,
gate passed, canary on a share of the requests, promoted (or why not).
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter
from typing import Any

from inhouse import services
from inhouse.client import infer
from inhouse.config import Settings
from inhouse.coordinator import CoordinatorStore, Event
from inhouse.data import read_rows
from inhouse.data.simulate import append_noisy_copies
from inhouse.errors import InhouseError

FINAL = {"promoted", "rejected", "flagged", "canary_rolled_back", "retrain_failed"}


def coordinator_cli(settings: Settings, *argv: str) -> int:
    """Run an ``inhouse coordinator …`` / ``rollback`` command in this process."""
    from inhouse.cli.coordinator_cmd import add_parser

    parser = argparse.ArgumentParser(prog="inhouse")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    code: int = args.handler(settings, args)
    return code


def _describe(event: Event) -> str:
    d = event.detail
    if event.kind == "retrain_started":
        return (
            f"retrain started: rows {d['after_id'] + 1}-{d['up_to_id']} "
            f"({d['new_rows']} new; trigger {', '.join(d['reasons'])}), warm start from "
            f"v{d['champion']}"
        )
    if event.kind == "canary_started":
        figures, canary = d["figures"], d["canary"]
        return (
            f"v{d['candidate_version']} passed the gate (test accuracy "
            f"{figures['candidate_accuracy']:.4f} vs {figures['champion_accuracy']:.4f}): "
            f"canary on {canary['share']:.0%} of requests for "
            f"{canary['ends_at'] - canary['started_at']:.0f} s"
        )
    if event.kind == "promoted":
        seen = d.get("canary", {}).get("candidate", {})
        return (
            f"v{d['candidate_version']} promoted to champion (canary answered "
            f"{seen.get('requests', 0)} requests, {seen.get('errors', 0)} errors)"
        )
    reasons = d.get("reasons") or [d.get("error", "")]
    return f"{event.kind.replace('_', ' ')}: {'; '.join(str(r) for r in reasons)}"


class _SteadyClient:
    """Calls the endpoint a few times a second so the canary sees traffic."""

    def __init__(self, settings: Settings, model: str, rows: list[list[float]]) -> None:
        self.versions: Counter[str] = Counter()
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(settings, model, rows), daemon=True)
        self._thread.start()

    def _run(self, settings: Settings, model: str, rows: list[list[float]]) -> None:
        i = 0
        while not self._stop.wait(0.1):
            try:
                answer = infer(settings, model, [rows[i % len(rows)]])
                self.versions[answer["model_version"]] += 1
            except InhouseError:
                self.failures += 1
            i += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=35)


def run_retrain_act(
    settings: Settings, model: str, *, dataset: str, rows: int = 300, window_s: float = 15
) -> dict[str, Any]:
    """Start the coordinator, append ``rows`` and narrate until the outcome; returns it."""
    engine = services.engine(settings)
    store = CoordinatorStore(engine)
    print(f"==> 6/7 the coordinator watches the {dataset} table")
    print(f"    $ inhouse coordinator start {model} --min-rows {rows} --canary-window {window_s:g}")
    coordinator_cli(
        settings,
        *("coordinator", "start", model, "--dataset", dataset, "--min-rows", str(rows)),
        *("--canary-window", str(window_s), "--poll", "1"),
    )
    seen_id = max((e.id for e in store.history(model, limit=1)), default=0)
    test = read_rows(engine, dataset, split="test")
    client = _SteadyClient(settings, model, test.x[:50].tolist())
    print(f"==> 7/7 {rows} new labelled rows arrive (INSERTs; `inhouse data append` does the same)")
    first, last = append_noisy_copies(engine, dataset, rows, seed=time.time_ns() % 2**31)
    print(f"    rows {first}-{last} appended; following the coordinator's history:")
    arrived, outcome = time.monotonic(), None
    try:
        while outcome is None and time.monotonic() - arrived < 600:
            time.sleep(0.5)
            for event in store.history(model, limit=20):
                if event.id <= seen_id:
                    continue
                seen_id = event.id
                print(f"    +{time.monotonic() - arrived:5.1f} s  {_describe(event)}", flush=True)
                if event.kind in FINAL:
                    outcome = event
    finally:
        client.stop()
    return {
        "outcome": outcome.kind if outcome else "timeout",
        "seconds": time.monotonic() - arrived,
        "champion": services.registry(settings).resolve(model, "champion"),
        "served": dict(client.versions),
        "failed_requests": client.failures,
    }
