"""``inhouse keys`` covers sealed objects in the configured bucket: rotate re-wraps them,
retire refuses a key they still need."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inhouse import services
from inhouse.cli import main
from inhouse.config import load_settings
from inhouse.crypto import KeyRing, read_header
from inhouse.kinds import build_model, load_module, register_module
from inhouse.models import MLPSpec
from inhouse.storage.rotation import object_key_usage, remote_roots
from tests.s3_server import S3Server

SPEC = MLPSpec(input_dim=4, hidden=[8], num_classes=3).model_dump()


def test_rotate_covers_the_bucket_and_retire_checks_it(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    uri = s3.uri("rotation")
    monkeypatch.setenv("INHOUSE_HOME", str(tmp_path))
    monkeypatch.delenv("INHOUSE_TOKEN", raising=False)
    for key, value in s3.storage(registry_uri=uri).items():
        monkeypatch.setenv(f"INHOUSE_STORAGE__{key.upper()}", str(value))
    settings = load_settings()
    registry = services.registry(settings)
    info = register_module(registry, "iris", module=build_model(SPEC), spec=SPEC, metrics={},
                           lineage={})  # fmt: skip
    first = KeyRing(settings.key_dir).active().id
    ((filesystem, root),) = remote_roots(settings)
    assert set(object_key_usage(filesystem, root)) == {first}
    empty = tmp_path / "empty"
    empty.mkdir()

    assert main(["keys", "rotate", "--rewrap", str(empty)]) == 0  # local paths only
    assert main(["keys", "retire", first, "--artifacts", str(empty)]) == 1
    assert "still wraps 2 object(s)" in capsys.readouterr().err
    assert main(["keys", "rotate"]) == 0  # no paths: the bucket too
    assert "re-wrapped 2 object(s) in s3://" in capsys.readouterr().out
    third = KeyRing(settings.key_dir).active().id
    assert set(object_key_usage(filesystem, root)) == {third}
    assert main(["keys", "retire", first, "--artifacts", str(empty)]) == 0
    key = f"{info.path}/weights.safetensors.enc"
    with filesystem.open_input_file(key) as handle:
        assert read_header(bytes(handle.read(65536))).key_id == third
    fresh = services.registry(load_settings())
    x = torch.randn(2, 4)
    assert torch.equal(load_module(fresh, info)(x), load_module(registry, info)(x))
