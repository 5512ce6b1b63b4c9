"""The registry on S3-compatible object storage (a local moto server): the same versions,
sealed exactly as on disk, visible only once the SQL row is committed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sqlalchemy import delete

from inhouse import services
from inhouse.config import load_settings
from inhouse.crypto import KeyRing
from inhouse.errors import CryptoError, StorageError
from inhouse.kinds import build_model, load_module, register_module
from inhouse.models import MLPSpec
from inhouse.registry import Registry
from inhouse.registry.records import ModelVersionRecord
from inhouse.schema import get_engine
from inhouse.storage import filesystem_for
from tests.s3_server import S3Server

SPEC = MLPSpec(input_dim=4, hidden=[8], num_classes=3).model_dump()


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    ring = KeyRing(tmp_path_factory.mktemp("keys"))
    ring.init()
    return ring


def _registry(s3: S3Server, url: str, keyring: KeyRing | None) -> tuple[Registry, str]:
    uri = s3.uri("registry")
    filesystem, root = filesystem_for(uri, load_settings(storage=s3.storage()).storage)
    engine = get_engine(url)
    return Registry(engine=engine, root=root, keyring=keyring, filesystem=filesystem), uri


def _register(registry: Registry, seed: int = 0) -> int:
    torch.manual_seed(seed)
    info = register_module(
        registry, "iris", module=build_model(SPEC), spec=SPEC, metrics={}, lineage={"x": 1}
    )
    return info.version


def test_register_and_load_sealed_versions(s3: S3Server, db_url: str, keyring: KeyRing) -> None:
    registry, uri = _registry(s3, db_url, keyring)
    assert [_register(registry, s) for s in range(2)] == [1, 2]
    info = registry.get("iris", "2")
    assert info.uri.startswith(uri + "/iris/v2-") and info.encrypted
    torch.manual_seed(1)
    expected = build_model(SPEC).eval()
    x = torch.randn(5, 4)
    assert torch.equal(load_module(registry, info)(x), expected(x))
    assert registry.full_lineage(info) == {"x": 1}
    prefix = uri.removeprefix(f"s3://{s3.bucket}/")
    keys = sorted(k.rsplit("/", 1)[1] for k in s3.keys(prefix))
    assert keys == ["lineage.json.enc"] * 2 + ["weights.safetensors.enc"] * 2
    plain = registry.read_artifact(info)
    for key in s3.keys(prefix):  # what the store holds is sealed: no plaintext weights
        blob = s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read()
        assert plain[:64] not in blob and b'"dtype"' not in blob and b'"lineage"' not in blob


def test_unencrypted_registry_and_missing_or_tampered_objects(
    s3: S3Server, sqlite_url: str, keyring: KeyRing
) -> None:
    registry, _ = _registry(s3, sqlite_url, None)
    info = registry.get("iris", str(_register(registry)))
    assert not info.encrypted and load_module(registry, info) is not None
    key = f"{info.path}/weights.safetensors".split("/", 1)[1]
    s3.client().delete_object(Bucket=s3.bucket, Key=key)
    with pytest.raises(StorageError, match="is missing"):
        registry.read_artifact(info)
    sealed, _ = _registry(s3, sqlite_url.replace("test.db", "sealed.db"), keyring)
    info = sealed.get("iris", str(_register(sealed)))
    key = f"{info.path}/weights.safetensors.enc".split("/", 1)[1]
    blob = bytearray(s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read())
    blob[-20] ^= 1
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=bytes(blob))
    with pytest.raises(CryptoError):
        sealed.read_artifact(info)


def test_a_version_is_visible_only_through_its_row(
    s3: S3Server, sqlite_url: str, keyring: KeyRing
) -> None:
    registry, uri = _registry(s3, sqlite_url, keyring)
    _register(registry)
    with registry.engine.begin() as conn:  # as if the process died before the commit
        conn.execute(delete(ModelVersionRecord))
    assert registry.versions("iris") == []
    assert _register(registry, seed=3) == 1  # the number is reused under a fresh prefix
    info = registry.get("iris", "1")
    torch.manual_seed(3)
    expected = build_model(SPEC).eval()
    x = torch.randn(2, 4)
    assert torch.equal(load_module(registry, info)(x), expected(x))


def test_services_open_the_registry_named_by_settings(
    s3: S3Server, tmp_path: Path, keyring: KeyRing
) -> None:
    uri = s3.uri("svc")
    settings = load_settings(
        home=str(tmp_path),
        storage=s3.storage(registry_uri=uri),
        security={"key_dir": str(keyring.path)},
    )
    registry = services.registry(settings)
    assert registry.files.remote and registry.files.root == uri.removeprefix("s3://")
    assert registry.get("iris", str(_register(registry))).uri.startswith(uri)
    assert not (tmp_path / "registry").exists()  # nothing on the local disk


def test_ray_train_storage_pickles_without_the_keys(s3: S3Server, tmp_path: Path) -> None:
    import pickle

    from inhouse.storage.runs import runs_storage

    settings = load_settings(home=str(tmp_path), storage=s3.storage(runs_uri=s3.uri("runs")))
    path, filesystem = runs_storage(settings)
    blob = pickle.dumps(filesystem)  # what Ray ships to the controller and every worker
    assert b"testing" not in blob  # the key pair ("testing") stays in the 0600 file
    worker_side = pickle.loads(blob)  # rebuilt from the settings and this node's file
    with worker_side.open_output_stream(f"{path}/checkpoint/state.json.enc") as out:
        out.write(b"sealed")
    assert s3.keys(path.split("/", 1)[1]) == [f"{path.split('/', 1)[1]}/checkpoint/state.json.enc"]
    local = load_settings(home=str(tmp_path))
    assert runs_storage(local) == (str(tmp_path.resolve() / "runs" / "ray"), None)
