"""Re-encryption of real stores: a registry version and a training checkpoint still load after it.

The registry checks the plaintext's SHA-256 from its SQL row and a checkpoint's sealed state
holds its tensor files' hashes: re-encryption must change every data key and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cryptography.hazmat.primitives.asymmetric import rsa

from inhouse.crypto import KeyRing, find_artifacts, read_header, rotate, usage_checker
from inhouse.kinds import build_model, load_module, register_module
from inhouse.models import MLPSpec
from inhouse.registry import Registry
from inhouse.schema import get_engine
from inhouse.training.checkpoint import load_checkpoint, save_checkpoint

SPEC = MLPSpec(input_dim=4, hidden=[8], num_classes=3).model_dump()


@pytest.fixture(scope="module")
def keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=3072) for _ in range(2)]


def test_registry_and_checkpoint_load_after_reencrypt_and_retire(
    tmp_path: Path, sqlite_url: str, keys: list[rsa.RSAPrivateKey]
) -> None:
    ring = KeyRing(tmp_path / "keys")
    old = ring.init(private_key=keys[0]).id
    registry = Registry(engine=get_engine(sqlite_url), root=tmp_path / "registry", keyring=ring)
    torch.manual_seed(0)
    model = build_model(SPEC)
    info = register_module(
        registry, "iris", module=model, spec=SPEC, metrics={"acc": 0.9}, lineage={"dataset": "iris"}
    )
    x = torch.randn(5, 4)
    registered = model.eval()(x).detach()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    checkpoint = tmp_path / "runs" / "run-1" / "epoch-3"
    save_checkpoint(
        checkpoint,
        model=model,
        optimizer=optimizer,
        state={"epoch": 3, "note": "x"},
        keyring=ring,
        artifact_id="run-1",
    )
    roots = [tmp_path / "registry", tmp_path / "runs"]
    before = {path: read_header(path) for path in find_artifacts(roots)}
    assert len(before) >= 4  # weights, lineage and the checkpoint's files

    report = rotate(keyring=ring, artifacts=roots, private_key=keys[1], reencrypt=True)
    assert sorted(report.reencrypted) == sorted(before) and not report.failed
    ring.retire(old, in_use=usage_checker(roots))
    for path, header in before.items():
        after = read_header(path)
        assert after.key_id == report.key.id and after.data_key_id != header.data_key_id
        assert (after.artifact_id, after.version) == (header.artifact_id, header.version)

    fresh = KeyRing(ring.path)
    reopened = Registry(engine=get_engine(sqlite_url), root=tmp_path / "registry", keyring=fresh)
    loaded = load_module(reopened, reopened.get("iris", str(info.version)))
    assert torch.equal(loaded(x), registered)
    assert reopened.full_lineage(info)["dataset"] == "iris"
    restored = build_model(SPEC)
    state = load_checkpoint(checkpoint, model=restored, keyring=fresh, artifact_id="run-1", epoch=3)
    assert state["note"] == "x"
    assert torch.equal(restored.eval()(x), model.eval()(x))
