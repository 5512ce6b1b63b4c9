"""The seed's own example on real MNIST, trained by Ray Train DDP: 784-64-64-10 ReLU, Adam
1e-3, cross-entropy, 5 epochs, global batch 32 (16 on each of 2 workers), Keras's Glorot start:
test accuracy >= 97.0% on the official 10,000 test images."""

from __future__ import annotations

import pytest

from inhouse import services
from inhouse.config import Settings, load_settings
from inhouse.data import seed
from inhouse.jobs import train
from inhouse.schema import get_engine

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED_EXAMPLE = {
    "dataset": "mnist",
    "model": "mnist_seed",
    "hidden": [64, 64],
    "activation": "relu",
    "init": "glorot",
    "optimizer": "adam",
    "lr": 1e-3,
    "epochs": 5,
    "batch_size": 16,
    "num_workers": 2,
    "compress": False,
}


def test_seed_example_on_mnist_reaches_97_percent_with_ray_ddp(
    ray_cluster: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    pytest.importorskip("zarr", reason="the mnist extra (make install installs it)")
    db_url = f"sqlite:///{tmp_path_factory.mktemp('mnist') / 'inhouse.db'}"
    settings = load_settings(home=str(ray_cluster.home), database_url=db_url, train=SEED_EXAMPLE)
    info, _ = seed(get_engine(db_url), "mnist")
    assert (info.train_rows, info.test_rows) == (60_000, 10_000)
    summary = train.run(settings, settings.train)
    assert summary["test_accuracy"] >= 0.970, summary
    version = services.registry(settings).get("mnist_seed", str(summary["version"]))
    assert version.spec["hidden"] == [64, 64] and version.spec["activation"] == "relu"
    assert version.lineage["rows"]["train_rows"] == 60_000
    assert (summary["num_workers"], summary["epochs"], summary["backend"]) == (2, 5, "gloo")
