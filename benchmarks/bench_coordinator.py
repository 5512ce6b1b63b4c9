"""Incremental retraining vs a full retrain from scratch on the same final data, and freshness.

The champion is the digits MLP trained from scratch (Adam 3e-3, 30 epochs, batch 32) and
compressed with the default settings, as ``inhouse train`` does. Then 300 new training rows
arrive (noisy copies of training digits). The coordinator (the same plain class the Ray actor
loops over, polled every 0.5 s in a thread here) retrains incrementally: warm start from the
champion, 8 epochs (batch 128, Adam 3e-3) over the new rows plus 4x as many replayed
older rows (the defaults), then registration,
global importance, compression like the champion and the gate. The baseline trains from
scratch with the champion's recipe on all the final training rows.

Figures: training wall time (the ratio target is <= 0.25), the whole retrain (train +
register + explain + compress + gate) vs full train + compress, test accuracy (within 0.5
points), and freshness: from the append that crosses the trigger to the candidate serving its
canary share (the ``candidate`` alias) and to the ``champion`` alias moving after a 10 s canary
window (<= 60 s). Serving replicas pick aliases up within a second (not measured here).
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from inhouse.benchmarks.common import torch_threads, train_digits
from inhouse.benchmarks.report import row
from inhouse.kinds import register_module

NAME = "coordinator"
NEW_ROWS = 300


def _champion(settings: Any) -> tuple[int, float]:
    from inhouse import services
    from inhouse.config import CompressionSettings, GateSettings
    from inhouse.data import read_rows, seed
    from inhouse.explain.lineage import importance_lineage
    from inhouse.kinds.tabular.compression import compress_version
    from inhouse.training import evaluate

    engine, registry = services.engine(settings), services.registry(settings)
    seed(engine, "digits")
    train = read_rows(engine, "digits", split="train")
    test = read_rows(engine, "digits", split="test")
    model, spec = train_digits(train.x, train.y, epochs=30)
    spec["feature_names"] = [f"pixel_{i}" for i in range(64)]
    lineage = {
        "dataset": "digits",
        "rows": {"first_id": 1, "up_to_id": 1797},
        "parent": None,
        **importance_lineage(model, train.x, feature_names=spec["feature_names"],
                             champion_lineage=None),
    }
    version = register_module(
        registry, "digits", module=model, spec=spec, metrics={}, lineage=lineage
    )
    registry.set_alias("digits", "champion", version.version)
    compress_version(registry=registry, engine=engine, model="digits",
                     settings=CompressionSettings(), gate=GateSettings())
    return version.version, evaluate(model, test.x, test.y).accuracy


def _append(engine: Any) -> int:
    from inhouse.data.simulate import append_noisy_copies

    return append_noisy_copies(engine, "digits", NEW_ROWS, seed=1, source_up_to_id=1797)[1]


def _incremental(settings: Any) -> tuple[float, float, dict[str, Any]]:
    """Run the coordinator loop; returns seconds to the canary and to the champion, and the
    gate's figures."""
    import functools

    from inhouse import services
    from inhouse.config import CoordinatorSettings
    from inhouse.coordinator.control import start
    from inhouse.coordinator.retrain import run_retrain
    from inhouse.coordinator.service import Coordinator

    cs = CoordinatorSettings(
        model="digits", min_rows=NEW_ROWS, poll_s=0.5, canary_share=0.1, canary_window_s=10
    )
    registry = services.registry(settings)
    start(registry, cs)
    coordinator = Coordinator(engine=services.engine(settings), registry=registry, settings=cs,
                              retrain=functools.partial(run_retrain, settings))
    champion = registry.resolve("digits", "champion")
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            coordinator.step()
            done.wait(cs.poll_s)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    crossed = time.perf_counter()
    _append(coordinator.engine)
    deadline = crossed + 300
    canary_s = None
    while registry.resolve("digits", "champion") == champion and time.perf_counter() < deadline:
        if canary_s is None and "candidate" in registry.aliases("digits"):
            canary_s = time.perf_counter() - crossed
        time.sleep(0.05)
    freshness = time.perf_counter() - crossed
    done.set()
    thread.join()
    events = coordinator.store.history("digits", kind="canary_started")
    if not events or not coordinator.store.history("digits", kind="promoted"):
        kinds = [e.kind for e in coordinator.store.history("digits")]
        raise RuntimeError(f"no promotion within 300 s; history: {kinds}")
    return canary_s or freshness, freshness, events[-1].detail


def _full(settings: Any) -> dict[str, float]:
    from inhouse import services
    from inhouse.compress import compress
    from inhouse.config import CompressionSettings
    from inhouse.data import read_rows
    from inhouse.training import evaluate

    engine = services.engine(settings)
    train = read_rows(engine, "digits", split="train")
    test = read_rows(engine, "digits", split="test")
    started = time.perf_counter()
    model, _spec = train_digits(train.x, train.y, epochs=30)
    train_s = time.perf_counter() - started
    compress(model, CompressionSettings(), train=(train.x, train.y))
    return {"train_s": train_s, "total_s": time.perf_counter() - started,
            "accuracy": evaluate(model, test.x, test.y).accuracy}


def run(quick: bool) -> list[dict[str, Any]]:
    from inhouse.config import load_settings
    from inhouse.registry import Registry

    with tempfile.TemporaryDirectory(prefix="inhouse-bench-coord-") as tmp, torch_threads(1):
        settings = load_settings(home=tmp)
        Path(tmp).mkdir(exist_ok=True)
        _champion(settings)
        canary_s, freshness, promoted = _incremental(settings)
        full = _full(settings)
        from inhouse import services

        registry: Registry = services.registry(settings)
        extra = promoted["figures"]["extra"]
        candidate = registry.get("digits", str(extra["float_version"]))
    incremental_train = float(candidate.metrics["train_seconds"])
    incremental_acc = float(candidate.metrics["test_accuracy"])
    extra_rows = candidate.lineage["rows"]["replay_rows"]
    rows = [
        row(NAME, "retrain training wall s (incremental vs full from scratch)",
            incremental_train, full["train_s"], target=("ratio", "<=", 0.25, ""),
            notes=f"warm start, 8 epochs (batch 128) over {NEW_ROWS} new + {extra_rows} "
                  "replayed rows vs "
                  f"30 epochs over all {candidate.lineage['rows']['up_to_id'] - 360} rows"),
        row(NAME, "retrain test accuracy % (incremental vs full)", incremental_acc * 100,
            full["accuracy"] * 100, target=("delta", ">=", -0.5, "points"),
            notes="float versions, same 360 test rows"),
        row(NAME, "whole retrain s (train+register+explain+compress+gate vs train+compress)",
            float(extra["retrain_seconds"]), full["total_s"],
            notes="compression (3 prune steps x 8 fine-tune epochs) dominates both"),
        row(NAME, "freshness s (append crossing the trigger -> candidate serving as canary)",
            canary_s, None,
            notes=f"poll 0.5 s; v{promoted['candidate_version']} passed the gate "
                  f"(spearman {promoted['figures']['importance_spearman']:.3f}); 10% share"),
        row(NAME, "freshness s (append crossing the trigger -> champion alias moved)",
            freshness, None, target=("ours", "<=", 60.0, "s"),
            notes="after a 10 s canary window (no traffic in this bench)"),
    ]
    return rows
