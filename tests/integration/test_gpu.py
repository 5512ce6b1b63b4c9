"""GPU code paths: NCCL DDP of our training loop, encrypted checkpoints on CUDA, Ray Train with
``use_gpu``. Marked ``gpu``: skipped where CUDA is absent (CI), run on a GPU machine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.gpu


def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        bunch.data, bunch.target, test_size=0.2, random_state=0, stratify=bunch.target
    )
    as_x = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.tensor(a, dtype=torch.int64)  # noqa: E731
    return as_x(x_train), as_y(y_train), as_x(x_test), as_y(y_test)


def _nccl_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    from inhouse.crypto import KeyRing
    from inhouse.kinds import build_model
    from inhouse.models import MLPSpec
    from inhouse.training import evaluate, load_checkpoint, save_checkpoint, train_one_epoch

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl", rank=rank, world_size=world)
    torch.cuda.set_device(rank)
    device = torch.device("cuda", rank)
    x, y, xt, yt = _digits()
    torch.manual_seed(0)
    spec = MLPSpec(input_dim=64, num_classes=10).model_dump()
    model = build_model(spec)
    model[0].fit(x)  # type: ignore[operator]
    ddp = DistributedDataParallel(model.to(device), device_ids=[rank])
    optimizer = torch.optim.Adam(ddp.parameters(), lr=3e-3)
    sampler = DistributedSampler(TensorDataset(x, y), num_replicas=world, rank=rank, seed=0)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, sampler=sampler)
    for epoch in range(8):
        sampler.set_epoch(epoch)
        train_one_epoch(ddp, loader, optimizer)
    accuracy = evaluate(model, xt, yt).accuracy
    if rank == 0:
        ring = KeyRing(Path(out) / "keys")
        ring.init()
        save_checkpoint(
            Path(out) / "ckpt",
            model=ddp,
            optimizer=optimizer,
            state={"epoch": 7},
            keyring=ring,
            artifact_id="gpu",
        )
        clone = build_model(spec).to(device)
        load_checkpoint(Path(out) / "ckpt", model=clone, keyring=ring, artifact_id="gpu", epoch=7)
        same = bool(torch.equal(clone[1].weight, model[1].weight))
        result = {
            "accuracy": accuracy,
            "backend": dist.get_backend(),
            "world": world,
            "device": str(next(model.parameters()).device),
            "checkpoint_same": same,
            "gpu": torch.cuda.get_device_name(0),
        }
        (Path(out) / "result.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


def test_nccl_ddp_of_our_loop_with_encrypted_checkpoints(tmp_path: Path) -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    world = torch.cuda.device_count()
    mp.spawn(_nccl_worker, args=(world, port, str(tmp_path)), nprocs=world, join=True)
    result = json.loads((tmp_path / "result.json").read_text())
    print("GPU RESULT", result)
    assert result["backend"] == "nccl" and result["device"].startswith("cuda")
    assert result["accuracy"] >= 0.95 and result["checkpoint_same"]


def test_ray_train_job_with_use_gpu(ray_cluster: object) -> None:
    from inhouse.config import Settings, load_settings
    from inhouse.data import seed
    from inhouse.jobs import train
    from inhouse.schema import get_engine

    assert isinstance(ray_cluster, Settings)
    settings = load_settings(
        home=str(ray_cluster.home),
        train={
            "model": "digits_gpu",
            "use_gpu": True,
            "num_workers": torch.cuda.device_count(),
            "promote": False,
        },
    )
    seed(get_engine(settings.db_url), "digits")
    summary = train.run(settings, settings.train)
    assert summary["test_accuracy"] >= 0.95


def test_text_fine_tune_on_gpu_with_mixed_precision(ray_cluster: object, tmp_path: Path) -> None:
    """The transformer path on CUDA: Ray Train NCCL workers, bf16 autocast (fp16 with a grad
    scaler where bf16 is missing), gradient checkpointing; the result is registered and its
    int8 version compressed on the CPU as for a CPU run."""
    from inhouse import services
    from inhouse.config import Settings, TextTrainOptions
    from inhouse.data.text_import import import_text_csv
    from inhouse.jobs import train
    from tests.hf_tiny import make_rows, make_tiny_bert, write_csv

    assert isinstance(ray_cluster, Settings)
    import_text_csv(
        services.engine(ray_cluster),
        name="intents_gpu",
        csv_path=write_csv(tmp_path / "train.csv", make_rows(300)),
        test_csv=write_csv(tmp_path / "test.csv", make_rows(60, seed=9)),
        label_column="category",
    )
    options = TextTrainOptions(
        dataset="intents_gpu",
        model="intents-gpu",
        model_dir=str(make_tiny_bert(tmp_path / "tiny")),
        epochs=5,
        lr=2e-3,
        batch_size=8,
        max_length=16,
        num_workers=torch.cuda.device_count(),
        use_gpu=True,
        gradient_checkpointing=True,
    )
    summary = train.run(ray_cluster, options)
    print("GPU TEXT RESULT", {k: summary.get(k) for k in ("backend", "amp", "test_accuracy")})
    expected = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    assert summary["backend"] == "nccl" and summary["amp"] == expected
    assert summary["test_accuracy"] >= 0.9
    fp32 = services.registry(ray_cluster).get("intents-gpu", str(summary["version"]))
    assert fp32.spec["role"] == "classifier"
