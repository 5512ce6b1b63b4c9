"""The key ring: lifecycle, file modes and refusal of insecure or inconsistent state."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from inhouse.crypto import KEY_DIR_ENV, KeyRing, KeyState, fingerprint
from inhouse.errors import ConfigError, ConflictError, KeyNotFoundError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_private_files(ring: KeyRing, rsa_keys: list[rsa.RSAPrivateKey]) -> None:
    active = ring.active()
    assert _mode(ring.path) == 0o700
    assert _mode(ring.manifest_path) == 0o600
    pem = ring.path / f"{active.id}.pem"
    assert _mode(pem) == 0o600
    assert pem.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert active.fingerprint == fingerprint(rsa_keys[0].public_key()).hex()
    assert active.state is KeyState.ACTIVE
    assert active.id.startswith("mk-")


def test_init_is_idempotent(ring: KeyRing, rsa_keys: list[rsa.RSAPrivateKey]) -> None:
    before = sorted(os.listdir(ring.path))
    assert ring.init(private_key=rsa_keys[1]) == ring.active()
    assert sorted(os.listdir(ring.path)) == before
    assert len(ring.list()) == 1


def test_init_generates_a_3072_bit_key(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "keys")
    record = ring.init()
    assert KeyRing(ring.path).private_key(record.id).key_size == 3072


def test_rotate_and_list(ring: KeyRing, rsa_keys: list[rsa.RSAPrivateKey]) -> None:
    first = ring.active()
    second = ring.rotate(private_key=rsa_keys[1])
    assert ring.active() == second
    states = {r.id: r.state for r in ring.list()}
    assert states == {first.id: KeyState.DECRYPT_ONLY, second.id: KeyState.ACTIVE}
    assert [r.id for r in ring.list()] == [first.id, second.id]
    # The decrypt-only key still loads.
    assert KeyRing(ring.path).private_key(first.id).key_size == 3072


def test_retire(ring: KeyRing, rsa_keys: list[rsa.RSAPrivateKey]) -> None:
    first = ring.active()
    with pytest.raises(ConflictError, match="active"):
        ring.retire(first.id, in_use=None)
    ring.rotate(private_key=rsa_keys[1])
    with pytest.raises(ConflictError, match="re-wrap"):
        ring.retire(first.id, in_use=lambda key_id: key_id == first.id)
    retired = ring.retire(first.id, in_use=lambda key_id: False)
    assert retired.state is KeyState.RETIRED and retired.retired_at is not None
    assert not (ring.path / f"{first.id}.pem").exists()
    assert ring.get(first.id).state is KeyState.RETIRED
    assert ring.retire(first.id, in_use=None) == retired
    with pytest.raises(KeyNotFoundError, match="retired"):
        ring.private_key(first.id)
    with pytest.raises(KeyNotFoundError):
        ring.retire("mk-nope", in_use=None)


def test_loose_key_file_mode_is_refused(ring: KeyRing) -> None:
    pem = ring.path / f"{ring.active().id}.pem"
    pem.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600") as info:
        KeyRing(ring.path).private_key(ring.active().id)
    assert "\n" not in str(info.value)
    pem.chmod(0o400)  # read-only for the owner is fine (e.g. a Kubernetes secret mount)
    KeyRing(ring.path).private_key(ring.active().id)


def test_group_writable_directory_is_refused(
    ring: KeyRing, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    ring.path.chmod(0o770)
    with pytest.raises(ConfigError, match="chmod 700"):
        ring.rotate(private_key=rsa_keys[1])


def test_small_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        KeyRing(tmp_path / "k", key_size=2048)
    small = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ConfigError, match="3072"):
        KeyRing(tmp_path / "k").init(private_key=small)


def test_key_file_not_matching_manifest(
    ring: KeyRing, rsa_keys: list[rsa.RSAPrivateKey], tmp_path: Path
) -> None:
    other = KeyRing(tmp_path / "other")
    other_id = other.init(private_key=rsa_keys[1]).id
    active_id = ring.active().id
    os.replace(other.path / f"{other_id}.pem", ring.path / f"{active_id}.pem")
    with pytest.raises(ConfigError, match="does not match the manifest"):
        KeyRing(ring.path).private_key(active_id)


def test_missing_key_file(ring: KeyRing) -> None:
    active_id = ring.active().id
    (ring.path / f"{active_id}.pem").unlink()
    with pytest.raises(KeyNotFoundError, match="missing"):
        KeyRing(ring.path).private_key(active_id)


@pytest.mark.parametrize("content", ["not json", '{"format": 9, "keys": []}', '{"keys": 1}'])
def test_corrupt_manifest(ring: KeyRing, content: str) -> None:
    ring.manifest_path.write_text(content)
    with pytest.raises(ConfigError, match="manifest"):
        ring.list()


def test_key_id_from_untrusted_header_cannot_escape(ring: KeyRing) -> None:
    with pytest.raises(KeyNotFoundError):
        ring.private_key("../../etc/passwd")


def test_from_env(tmp_path: Path) -> None:
    assert KeyRing.from_env(tmp_path / "a", env={}).path == tmp_path / "a"
    env = {KEY_DIR_ENV: str(tmp_path / "b")}
    assert KeyRing.from_env(tmp_path / "a", env=env).path == tmp_path / "b"


def test_manifest_is_plain_json(ring: KeyRing) -> None:
    data = json.loads(ring.manifest_path.read_text())
    assert data["format"] == 1
    assert data["keys"][0]["state"] == "active"
    assert set(data["keys"][0]) == {"id", "created_at", "state", "fingerprint", "retired_at"}
