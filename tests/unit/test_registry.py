"""The registry: immutable versions, aliases, atomic writes, verified loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inhouse.crypto import KeyRing
from inhouse.errors import (
    CryptoError,
    IntegrityError,
    InvalidInputError,
    ModelNotFoundError,
    StorageError,
)
from inhouse.kinds import build_model, load_module, register_module
from inhouse.models import MLPSpec
from inhouse.registry import Registry
from inhouse.schema import get_engine

SPEC = MLPSpec(input_dim=4, hidden=[8], num_classes=3).model_dump()


def _register(registry: Registry, seed: int = 0) -> int:
    torch.manual_seed(seed)
    model = build_model(SPEC)
    info = register_module(
        registry,
        "iris",
        module=model,
        spec=SPEC,
        metrics={"test_accuracy": 0.9},
        lineage={"dataset": "x"},
    )
    return info.version


def test_versions_count_up_and_load_the_same_function(db_url: str, tmp_path: Path) -> None:
    registry = Registry(engine=get_engine(db_url), root=tmp_path / "reg")
    assert [_register(registry, s) for s in range(3)] == [1, 2, 3]
    torch.manual_seed(1)
    expected = build_model(SPEC).eval()
    loaded = load_module(registry, registry.get("iris", "2"))
    x = torch.randn(5, 4)
    assert torch.equal(loaded(x), expected(x))
    assert registry.resolve("iris", "latest") == 3
    assert not list((tmp_path / "reg" / "iris").glob(".*tmp"))  # no leftovers


def test_champion_alias_moves_and_unknown_refs_fail(sqlite_url: str, tmp_path: Path) -> None:
    registry = Registry(engine=get_engine(sqlite_url), root=tmp_path)
    with pytest.raises(ModelNotFoundError):
        registry.get("iris")
    _register(registry)
    _register(registry)
    registry.set_alias("iris", "champion", 1)
    assert registry.get("iris").version == 1
    registry.set_alias("iris", "champion", 2)
    assert registry.aliases("iris") == {"champion": 2}
    with pytest.raises(ModelNotFoundError):
        registry.set_alias("iris", "champion", 9)
    with pytest.raises(ModelNotFoundError):
        registry.get("iris", "canary")


def test_weights_that_do_not_fit_the_spec_are_refused(sqlite_url: str, tmp_path: Path) -> None:
    registry = Registry(engine=get_engine(sqlite_url), root=tmp_path)
    wrong = build_model(MLPSpec(input_dim=5, hidden=[8], num_classes=3).model_dump())
    with pytest.raises(RuntimeError):
        register_module(registry, "iris", module=wrong, spec=SPEC, metrics={}, lineage={})
    assert registry.versions("iris") == []


def test_tampered_weights_are_not_loaded(sqlite_url: str, tmp_path: Path) -> None:
    registry = Registry(engine=get_engine(sqlite_url), root=tmp_path)
    _register(registry)
    info = registry.get("iris", "1")
    weights = info.path / "weights.safetensors"  # unencrypted registry: plain file
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="do not match"):
        load_module(registry, info)


@pytest.mark.parametrize("name", ["../x", "Iris", "a/b", "", "x" * 65])
def test_model_names_are_validated(sqlite_url: str, tmp_path: Path, name: str) -> None:
    registry = Registry(engine=get_engine(sqlite_url), root=tmp_path)
    with pytest.raises(InvalidInputError):
        registry.get(name)


def test_an_orphan_directory_from_a_crash_is_replaced(sqlite_url: str, tmp_path: Path) -> None:
    registry = Registry(engine=get_engine(sqlite_url), root=tmp_path)
    (tmp_path / "iris" / "v1").mkdir(parents=True)
    (tmp_path / "iris" / "v1" / "junk").write_text("left by a crash before the commit")
    assert _register(registry) == 1
    assert not (tmp_path / "iris" / "v1" / "junk").exists()


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    ring = KeyRing(tmp_path_factory.mktemp("keys"))
    ring.init()
    return ring


def test_encrypted_versions_never_store_plaintext(
    sqlite_url: str, tmp_path: Path, keyring: KeyRing
) -> None:
    registry = Registry(engine=get_engine(sqlite_url), root=tmp_path, keyring=keyring)
    _register(registry)
    info = registry.get("iris", "1")
    assert info.encrypted
    files = sorted(p.name for p in info.path.iterdir())
    assert files == ["lineage.json.enc", "weights.safetensors.enc"]
    torch.manual_seed(0)
    plain = build_model(SPEC).state_dict()
    blob = (info.path / "weights.safetensors.enc").read_bytes()
    for tensor in plain.values():  # no weight bytes appear in the clear
        assert tensor.numpy().tobytes()[:16] not in blob
    x = torch.randn(3, 4)
    torch.manual_seed(0)
    expected = build_model(SPEC).eval()
    assert torch.equal(load_module(registry, info)(x), expected(x))


def test_encrypted_version_without_the_right_key_is_not_loaded(
    sqlite_url: str, tmp_path: Path, keyring: KeyRing
) -> None:
    registry = Registry(engine=get_engine(sqlite_url), root=tmp_path / "r", keyring=keyring)
    _register(registry)
    info = registry.get("iris", "1")
    with pytest.raises(StorageError, match="encrypted"):
        load_module(Registry(engine=get_engine(sqlite_url), root=tmp_path / "r"), info)
    other = KeyRing(tmp_path / "other-keys")
    other.init()
    with pytest.raises(CryptoError):
        load_module(Registry(engine=registry.engine, root=tmp_path / "r", keyring=other), info)
    path = info.path / "weights.safetensors.enc"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        load_module(registry, info)


def test_compressed_format_round_trips(sqlite_url: str, tmp_path: Path, keyring: KeyRing) -> None:
    from inhouse.compress import compress
    from inhouse.config import CompressionSettings

    spec = MLPSpec(input_dim=8, hidden=[32], num_classes=2).model_dump()
    torch.manual_seed(0)
    parent = build_model(spec).eval()
    small = compress(parent, CompressionSettings(prune_amount=0.5, finetune_epochs=0))
    registry = Registry(engine=get_engine(sqlite_url), root=tmp_path, keyring=keyring)
    info = register_module(
        registry, "tiny", module=small, spec=spec, metrics={}, lineage={}, fmt="compressed"
    )
    assert info.format == "compressed"
    x = torch.randn(4, 8)
    assert torch.allclose(load_module(registry, info)(x), small(x), atol=1e-6)


def test_encrypted_weights_are_sealed_and_read_chunk_by_chunk(
    sqlite_url: str, tmp_path: Path, keyring: KeyRing
) -> None:
    import hashlib

    from inhouse.crypto import decrypt_file, read_header

    spec = MLPSpec(input_dim=64, hidden=[512, 512], num_classes=10).model_dump()  # ~1.2 MB
    torch.manual_seed(0)
    model = build_model(spec).eval()
    registry = Registry(engine=get_engine(sqlite_url), root=tmp_path, keyring=keyring)
    info = register_module(registry, "big", module=model, spec=spec, metrics={}, lineage={})
    path = info.path / "weights.safetensors.enc"
    assert info.size_bytes == path.stat().st_size
    header = read_header(path)
    assert (header.artifact_id, header.version) == ("big/weights.safetensors", info.version)
    plain = decrypt_file(path, keyring=keyring, artifact_id=header.artifact_id, version=1)
    assert len(plain) > 1 << 20  # more than one chunk
    assert hashlib.sha256(plain).hexdigest() == info.sha256
    x = torch.randn(3, 64)
    assert torch.equal(load_module(registry, info)(x), model(x))
    path.unlink()
    with pytest.raises(StorageError, match="missing"):
        load_module(registry, info)
