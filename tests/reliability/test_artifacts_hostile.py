"""Tampered, truncated and foreign artifacts are refused: a CryptoError (422), never a load.

Registry versions (both formats) and training checkpoints, encrypted as by default: every
byte of the header and a spread of the body flipped, truncations, appended bytes, files
swapped between versions, models, epochs and runs, files sealed under another key ring.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from cryptography.hazmat.primitives.asymmetric import rsa

from inhouse.crypto import KeyRing, read_header
from inhouse.errors import CryptoError, IntegrityError, StorageError
from inhouse.kinds import load_module
from inhouse.registry import ModelVersion, Registry
from inhouse.schema import get_engine
from inhouse.training import load_checkpoint, save_checkpoint
from tests.reliability.helpers import register, tiny_model


def _weights(info: ModelVersion) -> Path:
    return next(p for p in info.path.iterdir() if not p.name.startswith("lineage"))


def _positions(size: int, header: int) -> list[int]:
    """Every header byte, the first and last 64 bytes, and ~60 positions in between."""
    spread = range(header, size, max(1, (size - header) // 60))
    return sorted({*range(min(header + 64, size)), *range(max(0, size - 64), size), *spread})


def _refused(load: object) -> CryptoError:
    with pytest.raises(CryptoError) as caught:
        load()  # type: ignore[operator]
    return caught.value


@pytest.mark.parametrize("fmt", ["safetensors", "compressed"])
def test_every_flipped_or_truncated_byte_is_refused(registry: Registry, fmt: str) -> None:
    info = registry.get("digits", str(register(registry, fmt=fmt)))
    path = _weights(info)
    original = path.read_bytes()
    header = len(read_header(original).authenticated_bytes())
    tried = 0
    for position in _positions(len(original), header):
        tampered = bytearray(original)
        tampered[position] ^= 0x01
        path.write_bytes(bytes(tampered))
        error = _refused(lambda: load_module(registry, info))
        if position >= header:  # past the key id: only the AEAD tags can notice
            assert isinstance(error, IntegrityError), (position, error)
        tried += 1
    for length in [0, 1, 8, header - 1, header, header + 1, len(original) // 2, len(original) - 1]:
        path.write_bytes(original[:length])
        _refused(lambda: load_module(registry, info))
        tried += 1
    path.write_bytes(original + b"\x00")
    assert isinstance(_refused(lambda: load_module(registry, info)), IntegrityError)
    path.write_bytes(original)
    load_module(registry, info)  # the untouched file still loads
    assert tried > 100


def test_files_swapped_between_versions_and_models_are_refused(registry: Registry) -> None:
    first, second = register(registry, seed=0), register(registry, seed=1)
    other = register(registry, model="other", seed=2)
    v1, v2 = registry.get("digits", str(first)), registry.get("digits", str(second))
    foreign = registry.get("other", str(other))
    a, b, c = _weights(v1), _weights(v2), _weights(foreign)
    data_a, data_b, data_c = a.read_bytes(), b.read_bytes(), c.read_bytes()
    a.write_bytes(data_b)  # v2's weights under v1: bound to the version number
    assert isinstance(_refused(lambda: load_module(registry, v1)), IntegrityError)
    a.write_bytes(data_c)  # another model's v1: bound to the model name
    assert isinstance(_refused(lambda: load_module(registry, v1)), IntegrityError)
    a.write_bytes(data_a)
    b.write_bytes(data_a)
    assert isinstance(_refused(lambda: load_module(registry, v2)), IntegrityError)
    b.write_bytes(data_b)
    for info in (v1, v2, foreign):
        load_module(registry, info)


def test_artifacts_of_another_key_ring_or_in_the_clear_are_refused(
    registry: Registry, tmp_path: Path
) -> None:
    info = registry.get("digits", str(register(registry)))
    path = _weights(info)
    stranger = KeyRing(tmp_path / "stranger-keys")
    stranger.init(private_key=rsa.generate_private_key(public_exponent=65537, key_size=3072))
    elsewhere = Registry(engine=registry.engine, root=tmp_path / "elsewhere", keyring=stranger)
    sealed_elsewhere = _weights(elsewhere.get("digits", str(register(elsewhere, seed=3))))
    path.write_bytes(sealed_elsewhere.read_bytes())  # same model and version, foreign key
    _refused(lambda: load_module(registry, info))
    plain = Registry(engine=get_engine(f"sqlite:///{tmp_path / 'plain.db'}"), root=tmp_path / "p")
    path.write_bytes(_weights(plain.get("digits", str(register(plain)))).read_bytes())
    _refused(lambda: load_module(registry, info))  # a plaintext file where a sealed one belongs
    path.write_bytes(b"\x00" * 4096)
    _refused(lambda: load_module(registry, info))


def test_a_missing_artifact_is_a_clear_storage_error(registry: Registry) -> None:
    info = registry.get("digits", str(register(registry)))
    _weights(info).unlink()
    with pytest.raises(StorageError, match="missing"):
        load_module(registry, info)


def test_unencrypted_tampered_weights_are_an_integrity_error(tmp_path: Path) -> None:
    plain = Registry(engine=get_engine(f"sqlite:///{tmp_path / 'plain.db'}"), root=tmp_path / "p")
    info = plain.get("digits", str(register(plain)))
    path = _weights(info)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        load_module(plain, info)


def _checkpoint(directory: Path, *, keyring: KeyRing, epoch: int, run: str, seed: int) -> None:
    model = tiny_model(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 64)).sum().backward()
    optimizer.step()  # so the optimizer has state tensors to save
    save_checkpoint(
        directory, model=model, optimizer=optimizer, state={"epoch": epoch}, keyring=keyring,
        artifact_id=run,
    )


def _resume(directory: Path, keyring: KeyRing) -> None:
    model = tiny_model(9)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    load_checkpoint(
        directory, model=model, optimizer=optimizer, keyring=keyring, artifact_id="run-a", epoch=1
    )


def test_checkpoints_refuse_tampering_truncation_and_swaps(
    tmp_path: Path, keyring: KeyRing
) -> None:
    epoch1, epoch2, other = tmp_path / "e1", tmp_path / "e2", tmp_path / "other"
    _checkpoint(epoch1, keyring=keyring, epoch=1, run="run-a", seed=0)
    _checkpoint(epoch2, keyring=keyring, epoch=2, run="run-a", seed=1)
    _checkpoint(other, keyring=keyring, epoch=1, run="run-b", seed=2)
    for name in ("model.safetensors.enc", "optimizer.safetensors.enc", "state.json.enc"):
        target = epoch1 / name
        original = target.read_bytes()
        for position in (len(original) // 3, len(original) - 1):
            flipped = bytearray(original)
            flipped[position] ^= 0x80
            target.write_bytes(bytes(flipped))
            assert isinstance(_refused(lambda: _resume(epoch1, keyring)), IntegrityError)
        target.write_bytes(original[: len(original) // 2])
        assert isinstance(_refused(lambda: _resume(epoch1, keyring)), IntegrityError)
        shutil.copy(epoch2 / name, target)  # a later epoch's file: bound to the epoch
        assert isinstance(_refused(lambda: _resume(epoch1, keyring)), IntegrityError)
        shutil.copy(other / name, target)  # another run's file: bound to the run
        assert isinstance(_refused(lambda: _resume(epoch1, keyring)), IntegrityError)
        target.write_bytes(original)
    _resume(epoch1, keyring)  # intact again: loads


def test_a_truncated_checkpoint_state_is_a_clear_error(tmp_path: Path, keyring: KeyRing) -> None:
    _checkpoint(tmp_path / "c", keyring=keyring, epoch=1, run="run-a", seed=0)
    state = tmp_path / "c" / "state.json.enc"
    state.write_bytes(state.read_bytes()[:10])
    with pytest.raises(IntegrityError):
        _resume(tmp_path / "c", keyring)

