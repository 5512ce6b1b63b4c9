"""Shared pieces of the benchmarks: timing, the digits data and model, a local Ray.

Ray reads its authentication mode when it is first imported, so nothing here imports ray at
module level: :func:`local_ray` sets ``RAY_AUTH_MODE=token`` and a 0600 token file first.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from inhouse.atomic import atomic_write_bytes

_token_dir: Path | None = None  # this process's Ray token directory (see ray_auth_env)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def time_calls_ms(fn: Callable[[], Any], *, repeats: int, warmup: int = 10) -> list[float]:
    """Milliseconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000.0)
    return times


def median(values: list[float]) -> float:
    return float(statistics.median(values))


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads, then restore the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def free_port(preferred: int) -> int:
    """``preferred`` if nothing listens there on 127.0.0.1, else a port the kernel picks."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            chosen = int(sock.getsockname()[1])
            if chosen != 6379:  # the machine's Redis
                return chosen
    raise RuntimeError("no free TCP port on 127.0.0.1")


def ray_auth_env() -> None:
    """Token auth for the benchmark's own Ray: a fresh 0600 token, set before ray is imported."""
    global _token_dir
    if _token_dir is not None:
        return
    if "ray" in sys.modules and os.environ.get("RAY_AUTH_MODE") != "token":
        raise RuntimeError("ray was imported before the benchmark set RAY_AUTH_MODE=token")
    _token_dir = Path(tempfile.mkdtemp(prefix="inhouse-bench-ray-"))
    atexit.register(remove_token_dir)
    token_path = _token_dir / "auth_token"
    atomic_write_bytes(token_path, secrets.token_hex(32).encode(), mode=0o600)
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token_path)
    os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ.pop("RAY_ADDRESS", None)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def remove_token_dir() -> None:
    """Delete the token directory (also registered with atexit when it is made)."""
    if _token_dir is not None:
        shutil.rmtree(_token_dir, ignore_errors=True)


@contextlib.contextmanager
def local_ray(*, num_cpus: int = 4, by_value: tuple[ModuleType, ...] = ()) -> Iterator[float]:
    """A fresh local Ray (never an existing cluster), shut down on exit; yields ray.init seconds.

    ``by_value`` modules are pickled by value: opacus 1.6 installs a top-level ``benchmarks``
    package in site-packages that would shadow ours in Ray workers.
    """
    ray_auth_env()
    import ray
    from ray import cloudpickle

    for module in by_value:
        cloudpickle.register_pickle_by_value(module)
    started = time.perf_counter()
    # address="local": a bare ray.init() would join a running demo/test cluster instead.
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="WARNING",
    )
    try:
        yield time.perf_counter() - started
    finally:
        ray.shutdown()
        for module in by_value:
            cloudpickle.unregister_pickle_by_value(module)


def digits_data(home: Path) -> tuple[Any, Any]:
    """The platform's digits train/test split (inhouse.data on a SQLite db under ``home``)."""
    from inhouse.data import read_rows, seed
    from inhouse.schema import get_engine

    engine = get_engine(f"sqlite:///{home / 'bench.db'}")
    seed(engine, "digits")
    return read_rows(engine, "digits", split="train"), read_rows(engine, "digits", split="test")


def train_digits(
    x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float = 3e-3, seed: int = 0
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The digits MLP trained in-process (Adam, batch 32); returns ``(model, spec)``."""
    from inhouse.kinds import build_model
    from inhouse.models import MLPSpec
    from inhouse.training import train_one_epoch

    torch.manual_seed(seed)
    spec = MLPSpec(input_dim=64, num_classes=10).model_dump()
    model = build_model(spec)
    model[0].fit(x)  # type: ignore[operator]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    for _ in range(epochs):
        train_one_epoch(model, loader, optimizer)
    model.eval()
    return model, spec
