"""Ray Train vs plain ``torch.distributed`` (gloo) DDP running the same loop.

Both sides run ``inhouse.training.train_one_epoch`` on the digits MLP (Adam 3e-3, batch 32 per
worker, 2 workers, ``DistributedSampler``, seed 0, 1 torch thread per worker) on the same
tensors. Training time is measured inside the workers around the epoch loop (rank 0, between
two barriers), so it excludes start-up; start-up is reported separately:

- Ray: ``trainer.fit()`` wall time minus the in-loop time (worker group, process group,
  teardown) and the time from calling ``fit()`` to the first line of the loop;
- plain: ``torch.multiprocessing.start_processes`` + ``init_process_group`` wall time minus the
  in-loop time, and the time from spawning to the first line after ``init_process_group``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from inhouse.benchmarks.common import digits_data, free_port, local_ray
from inhouse.benchmarks.report import row

NAME = "train"
WORKERS = 2
SEED = 0


def _loop(rank: int, world: int, data: dict[str, Any], wrap: Any) -> dict[str, Any]:
    """The shared per-worker body: build, wrap in DDP, train ``epochs`` epochs, evaluate."""
    import torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    from inhouse.kinds import build_model
    from inhouse.training import evaluate, train_one_epoch, unwrap

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    model = build_model(data["spec"])
    model[0].fit(data["x"])  # type: ignore[operator]
    model = wrap(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    dataset = TensorDataset(data["x"], data["y"])
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, seed=SEED)
    loader = DataLoader(dataset, batch_size=32, sampler=sampler)
    epoch_seconds = []
    dist.barrier()
    started = time.perf_counter()
    for epoch in range(data["epochs"]):
        sampler.set_epoch(epoch)
        epoch_started = time.perf_counter()
        train_one_epoch(model, loader, optimizer)
        epoch_seconds.append(time.perf_counter() - epoch_started)
    dist.barrier()
    loop_seconds = time.perf_counter() - started
    accuracy = evaluate(unwrap(model), data["xt"], data["yt"]).accuracy
    return {
        "loop_seconds": loop_seconds,
        "median_epoch_seconds": sorted(epoch_seconds)[len(epoch_seconds) // 2],
        "epoch_seconds": epoch_seconds,
        "test_accuracy": accuracy,
    }


def _ray_worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    first_line = time.time()
    context = ray.train.get_context()
    metrics = _loop(
        context.get_world_rank(), context.get_world_size(), config, ray.train.torch.prepare_model
    )
    metrics["first_line_wall"] = first_line
    if context.get_world_rank() != 0:
        ray.train.report(metrics)
        return
    # Train v2 fills result.metrics only from a reported checkpoint: send a one-file one.
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "metrics.txt").write_text(repr(metrics))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


def _plain_worker(rank: int, world: int, port: int, data: dict[str, Any], queue: Any) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    first_line = time.time()
    try:
        metrics = _loop(rank, world, data, DistributedDataParallel)
        if rank == 0:
            queue.put({**metrics, "first_line_wall": first_line})
    finally:
        dist.destroy_process_group()


def _run_plain(data: dict[str, Any]) -> dict[str, Any]:
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    before = time.time()
    started = time.perf_counter()
    mp.start_processes(
        _plain_worker,
        args=(WORKERS, free_port(29511), data, queue),
        nprocs=WORKERS,
        join=True,
        start_method="spawn",
    )
    wall = time.perf_counter() - started
    metrics: dict[str, Any] = queue.get()
    return {**metrics, "wall": wall, "to_first_line": metrics["first_line_wall"] - before}


def _run_ray(data: dict[str, Any], storage: Path) -> dict[str, Any]:
    import ray.train
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config=data,
        scaling_config=ray.train.ScalingConfig(num_workers=WORKERS),
        run_config=ray.train.RunConfig(name="bench-train", storage_path=str(storage)),
    )
    before = time.time()
    started = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - started
    metrics = dict(result.metrics)
    return {**metrics, "wall": wall, "to_first_line": metrics["first_line_wall"] - before}


def _mean(trials: list[dict[str, Any]], key: str) -> float:
    return sum(float(t[key]) for t in trials) / len(trials)


def run(quick: bool) -> list[dict[str, Any]]:
    """Train both ways for the same number of epochs; rows for time, start-up and accuracy.

    Full runs are ordered plain, Ray, Ray, plain (ABBA), so a drift in the machine's load
    (it is shared) weighs on both sides alike; times are summed over the trials.
    """
    from inhouse.models import MLPSpec

    epochs, trials = (5, 1) if quick else (30, 2)
    plain: list[dict[str, Any]] = []
    ours: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="inhouse-bench-train-") as tmp:
        train, test = digits_data(Path(tmp))
        data = {
            "spec": MLPSpec(input_dim=64, num_classes=10).model_dump(),
            "x": train.x,
            "y": train.y,
            "xt": test.x,
            "yt": test.y,
            "epochs": epochs,
        }
        # Plain runs while no Ray process is alive, so it is the undisturbed baseline.
        plain.append(_run_plain(data))
        with local_ray(num_cpus=4, by_value=(sys.modules[__name__],)) as init_seconds:
            for trial in range(trials):
                ours.append(_run_ray(data, Path(tmp) / f"ray{trial}"))
        if trials > 1:
            plain.append(_run_plain(data))
    loops = "Ray " + ", ".join(f"{t['loop_seconds']:.2f}" for t in ours)
    loops += "; plain " + ", ".join(f"{t['loop_seconds']:.2f}" for t in plain)
    epoch_ours = sorted(e for t in ours for e in t["epoch_seconds"])
    epoch_plain = sorted(e for t in plain for e in t["epoch_seconds"])
    return [
        row(NAME, "training time s (excl. start-up)", sum(t["loop_seconds"] for t in ours),
            sum(t["loop_seconds"] for t in plain), target=("ratio", "<=", 1.05, ""),
            notes=f"{trials} x {epochs} epochs per side, {WORKERS} workers x 1 thread, rank-0 "
                  f"time between barriers; per trial s: {loops}; Ray's own release "
                  "test allows 1.15"),
        row(NAME, "median epoch s", epoch_ours[len(epoch_ours) // 2],
            epoch_plain[len(epoch_plain) // 2], notes="per-epoch view, less sensitive to noise"),
        row(NAME, "start-up s (fit wall - loop)", _mean(ours, "wall") - _mean(ours, "loop_seconds"),
            _mean(plain, "wall") - _mean(plain, "loop_seconds"),
            notes=f"mean per run, teardown included; ray.init took {init_seconds:.1f} s "
                  "before (not counted)"),
        row(NAME, "time to first step s", _mean(ours, "to_first_line"),
            _mean(plain, "to_first_line"),
            notes="fit() / spawn call -> first line after the process group is up"),
        row(NAME, "test accuracy", min(t["test_accuracy"] for t in ours),
            min(t["test_accuracy"] for t in plain), target=("both", ">=", 0.95, ""),
            notes="sanity: same seed, same data, same loop, so both should match"),
    ]
