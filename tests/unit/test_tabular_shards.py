"""Two real tabular training workers in a gloo process group (no Ray): each reads only its
shard, the shards are disjoint and cover the training split, both run the same number of
batches, and both standardise by the statistics of the whole split."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from inhouse.data import describe, read_rows, seed
from inhouse.kinds.tabular.sharding import EqualBatchSampler
from inhouse.schema import get_engine

WORLD = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker(rank: int, db_url: str, port: int, out: str) -> None:
    from torch.nn.parallel import DistributedDataParallel

    from inhouse.config import TrainSettings
    from inhouse.kinds.tabular.training import mlp_spec
    from inhouse.kinds.tabular.worker import TabularWorker, TabularWorkerConfig
    from inhouse.kinds.training import WorkerConfig, WorkerPlace
    from inhouse.training.private_run import WorkerPrivacy

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        info = describe(get_engine(db_url), "breast_cancer")
        options = TrainSettings(dataset="breast_cancer", epochs=2, batch_size=32, hidden=[8])
        part = TabularWorkerConfig(
            options=options,
            spec=mlp_spec(info, [8]),
            db_url=db_url,
            up_to_id=info.last_id,
            privacy=WorkerPrivacy(plan=None),
        )
        config = WorkerConfig(
            kind="tabular", part=part, run_name="t", epochs=2, tensorboard_dir=f"{out}/tb{rank}"
        )
        place = WorkerPlace(rank=rank, world=WORLD, device=torch.device("cpu"))
        worker = TabularWorker(config, place)
        worker.start(state=None, start_epoch=0, wrap=DistributedDataParallel)
        metrics = [worker.epoch(e) for e in range(2)]
        worker.close()
        standardize = dict(worker.model[0].named_buffers())  # type: ignore[index]
        result = {
            "train_ids": worker._train.ids.tolist(),
            "test_ids": worker._test.ids.tolist(),
            "batches": len(worker._loader),
            "mean": standardize["mean"].tolist(),
            "std": standardize["std"].tolist(),
            "test_accuracy": [m["test_accuracy"] for m in metrics],
        }
        Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_workers_read_disjoint_shards_covering_the_split(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'shards.db'}"
    seed(get_engine(db_url), "breast_cancer")
    mp.spawn(_worker, args=(db_url, _free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    engine = get_engine(db_url)
    for split in ("train", "test"):
        whole = read_rows(engine, "breast_cancer", split=split).ids.tolist()
        parts = [set(r[f"{split}_ids"]) for r in ranks]
        assert not parts[0] & parts[1]
        assert parts[0] | parts[1] == set(whole) and sum(map(len, parts)) == len(whole)
    assert ranks[0]["batches"] == ranks[1]["batches"]
    train = read_rows(engine, "breast_cancer", split="train").x
    std = train.std(dim=0)
    for r in ranks:
        assert torch.allclose(torch.tensor(r["mean"]), train.mean(dim=0), rtol=1e-4)
        assert torch.allclose(torch.tensor(r["std"]), std, rtol=1e-3)
    assert ranks[0]["test_accuracy"] == ranks[1]["test_accuracy"]  # over both shards


@pytest.mark.parametrize(("n", "total"), [(5, 5), (5, 7), (3, 10)])
def test_equal_batch_sampler_pads_with_its_own_rows_and_reshuffles(n: int, total: int) -> None:
    sampler = EqualBatchSampler(n, total, seed=0, rank=1)
    first = list(sampler)
    assert len(first) == total == len(sampler) and set(first) == set(range(n))
    assert sorted(first[:n]) == list(range(n))  # every row once before any repeats
    sampler.set_epoch(1)
    assert n < 3 or list(sampler) != first
