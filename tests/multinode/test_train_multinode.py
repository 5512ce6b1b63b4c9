"""Ray Train DDP across two nodes, and a worker node lost mid-run: resumed from checkpoint.

Each worker node offers one ``trainer_slot``; a worker asks for one, so the two DDP workers
land on different nodes (the head has none). Gloo all-gathers the node ids, which proves the
gradients really cross nodes. The second test removes a worker node while epoch 2 waits;
Ray Train restarts the group on a replacement node from the last checkpoint. The nodes share
no directory: Ray Train's storage is a bucket on a local S3-compatible server (moto), as on a
cluster whose checkpoints live in object storage.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from inhouse.config import load_settings
from inhouse.storage.runs import runs_storage
from tests.multinode.conftest import head_args, worker_args
from tests.polling import wait_for
from tests.s3_server import S3Server

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.scale]

SLOT = 0


def _loop(config: dict[str, Any]) -> None:
    """A small MLP on synthetic data; epoch ``hold_at`` waits for ``release`` (first try only)."""
    import ray
    import ray.train
    import ray.train.torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    nodes: list[Any] = [None] * world
    dist.all_gather_object(nodes, ray.get_runtime_context().get_node_id())
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=generator)
    y = (x.sum(dim=1) > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    start = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = torch.load(Path(directory, "state.pt"), weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["epoch"]) + 1
    ddp = ray.train.torch.prepare_model(model)
    dataset = TensorDataset(x, y)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, seed=0)
    loader = DataLoader(dataset, batch_size=32, sampler=sampler)
    for epoch in range(start, config["epochs"]):
        if checkpoint is None and epoch == config.get("hold_at"):
            ray.train.get_all_reported_checkpoints(timeout_s=60)  # epoch-1 checkpoint committed
            Path(config["holding"]).touch()  # the test removes a node now
            while not Path(config["release"]).exists():
                time.sleep(0.1)
        sampler.set_epoch(epoch)
        total = 0.0
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(ddp(xb), yb)
            loss.backward()
            optimizer.step()
            total += float(loss)
        metrics = {"epoch": epoch, "loss": total, "start": start, "nodes": sorted(set(nodes))}
        if rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
                torch.save(state | {"epoch": epoch}, Path(tmp, "state.pt"))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics)


def _storage(s3: S3Server) -> tuple[Any, str]:
    """Ray Train's storage: a fresh prefix in the test bucket, as ``inhouse train`` makes it
    (the filesystem reaches the workers as settings; each node reads its own credentials)."""
    settings = load_settings(storage=s3.storage(runs_uri=s3.uri("multinode")))
    path, filesystem = runs_storage(settings)
    return filesystem, path


def _trainer(storage: tuple[Any, str], config: dict[str, Any], max_failures: int) -> Any:
    import ray.train
    import ray.train.torch

    filesystem, path = storage
    return ray.train.torch.TorchTrainer(
        _loop,
        train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=2, resources_per_worker={"CPU": 1, "trainer_slot": 1}
        ),
        run_config=ray.train.RunConfig(
            name="multinode",
            storage_path=path,
            storage_filesystem=filesystem,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
        ),
    )


def test_ddp_runs_across_two_nodes(make_cluster: Any, s3: S3Server) -> None:
    import ray

    make_cluster(
        SLOT,
        head=head_args(SLOT),
        workers=[worker_args(trainer_slot=1), worker_args(trainer_slot=1)],
    )
    worker_nodes = {
        n["NodeID"] for n in ray.nodes() if n["Alive"] and "trainer_slot" in n["Resources"]
    }
    storage = _storage(s3)
    result = _trainer(storage, {"epochs": 3}, max_failures=0).fit()
    assert result.error is None
    assert set(result.metrics["nodes"]) == worker_nodes and len(worker_nodes) == 2
    assert result.metrics["epoch"] == 2 and result.checkpoint is not None
    checkpoints = s3.keys(storage[1].split("/", 1)[1])
    assert any(key.endswith("/state.pt") for key in checkpoints)  # in the bucket


def test_a_lost_worker_node_resumes_from_the_last_checkpoint(
    make_cluster: Any, tmp_path: Path, s3: S3Server
) -> None:
    cluster = make_cluster(
        SLOT,
        head=head_args(SLOT),
        workers=[worker_args(trainer_slot=1), worker_args(trainer_slot=1)],
    )
    victim = next(iter(cluster.worker_nodes))
    holding, release = tmp_path / "holding", tmp_path / "release"
    config = {"epochs": 4, "hold_at": 2, "holding": str(holding), "release": str(release)}
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["result"] = _trainer(_storage(s3), config, max_failures=2).fit()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    runner = threading.Thread(target=fit)
    runner.start()
    try:
        wait_for(holding.exists, timeout_s=120, what="training to reach epoch 2")
        cluster.remove_node(victim)  # its raylet and workers die: a lost machine
        cluster.add_node(**worker_args(trainer_slot=1))  # a replacement joins
    except BaseException:
        release.touch()  # let the run end so the test fails fast
        raise
    finally:
        runner.join(timeout=240)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.metrics["start"] == 2  # resumed after epoch 1's checkpoint, not from 0
    assert result.metrics["epoch"] == 3
    assert len(result.metrics["nodes"]) == 2
