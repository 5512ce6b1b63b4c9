"""Registry, checkpoints and Ray Train storage on S3-compatible object storage (local moto).

Register -> load -> serve a model whose versions live in a bucket, and a checkpointed DDP run
whose Ray Train ``storage_path`` is the bucket, resumed from a checkpoint read back from it
after a worker dies. What the bucket holds is sealed: no plaintext weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
import torch

from inhouse import services
from inhouse.config import ServeArgs, Settings, load_settings
from inhouse.data import read_rows, seed
from inhouse.jobs import train
from inhouse.kinds import build_model, load_module, register_module
from inhouse.models import MLPSpec
from inhouse.schema import get_engine
from inhouse.serve.app import build_app
from tests.s3_server import S3Server

pytestmark = pytest.mark.integration
MODEL = "digits_s3"


def _plaintext_objects(s3: S3Server, prefix: str) -> list[str]:
    """Keys under ``prefix`` whose bytes parse as a safetensors header (plaintext weights)."""
    client, found = s3.client(), []
    for key in s3.keys(prefix):
        head = client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()[:4096]
        size = int.from_bytes(head[:8], "little")
        if 0 < size < 10**8 and head[8:9] == b"{" and b'"dtype"' in head[8 : 8 + size]:
            found.append(key)
    return found


def _prefix(s3: S3Server, uri: str) -> str:
    return uri.removeprefix(f"s3://{s3.bucket}/")


def test_register_load_and_serve_from_object_storage(
    ray_cluster: Settings, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray import serve

    uri = s3.uri("serve-registry")
    for key, value in s3.storage(registry_uri=uri).items():  # replicas get them in the payload
        monkeypatch.setenv(f"INHOUSE_STORAGE__{key.upper()}", str(value))
    settings = load_settings(home=str(ray_cluster.home))
    assert settings.storage.registry_uri == uri and settings.security.encrypt_at_rest
    engine = get_engine(settings.db_url)
    seed(engine, "digits")
    test = read_rows(engine, "digits", split="test")
    torch.manual_seed(0)
    spec = MLPSpec(input_dim=64, num_classes=10).model_dump()
    model = build_model(spec)
    registry = services.registry(settings)
    info = register_module(
        registry, MODEL, module=model, spec=spec, metrics={}, lineage={"dataset": "digits"}
    )
    registry.set_alias(MODEL, "champion", info.version)
    assert info.uri.startswith(uri) and not (settings.registry_dir / MODEL).exists()
    loaded = load_module(registry, registry.get(MODEL))
    expected = model.eval()(test.x[:20]).argmax(dim=1).tolist()
    assert loaded(test.x[:20]).argmax(dim=1).tolist() == expected
    assert _plaintext_objects(s3, _prefix(s3, uri)) == []

    serve.run(
        build_app(ServeArgs(models=[MODEL], home=str(settings.home))), name="s3", route_prefix="/s3"
    )
    try:
        token = services.ensure_client_token(settings).read_text().strip()
        response = httpx.post(
            f"{settings.serve_url}/s3/v1/models/{MODEL}:predict",
            json={"instances": test.x[:20].tolist()},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == expected
    finally:
        serve.delete("s3")


@pytest.mark.reliability  # a kill-and-resume fault test (make test-reliability); make test
# trains with checkpoints on S3 across two nodes (tests/multinode/test_train_multinode.py)
def test_checkpointed_training_on_object_storage_resumes_from_it(
    ray_cluster: Settings, pg_url: str, s3: S3Server
) -> None:
    registry_uri, runs_uri = s3.uri("train-registry"), s3.uri("train-runs")
    settings = load_settings(
        home=str(ray_cluster.home),
        database_url=pg_url,
        train={"model": "digits_s3_train", "epochs": 4, "promote": False, "compress": False},
        storage=s3.storage(registry_uri=registry_uri, runs_uri=runs_uri),
    )
    seed(get_engine(pg_url), "digits")
    summary = train.run(settings, settings.train, crash_at_epoch=2)
    assert Path(summary["run_dir"], "crash-marker").exists()  # a worker really died
    info = services.registry(settings).get("digits_s3_train", str(summary["version"]))
    assert info.metrics["resumed_from_epoch"] == 2  # from the checkpoint stored in the bucket
    assert summary["test_accuracy"] >= 0.9 and info.uri.startswith(registry_uri)
    checkpoints = [k for k in s3.keys(_prefix(s3, runs_uri)) if k.endswith("/state.json.enc")]
    assert checkpoints, "Ray Train stored the sealed checkpoints in the bucket"
    for prefix in (registry_uri, runs_uri):
        assert _plaintext_objects(s3, _prefix(s3, prefix)) == []
    assert os.path.isdir(summary["run_dir"])  # the run's local side: TensorBoard, markers
