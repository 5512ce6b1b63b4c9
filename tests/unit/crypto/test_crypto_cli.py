"""``inhouse keys`` through its argparse entry point."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from inhouse.cli.keys_cmd import main
from inhouse.crypto import KEY_DIR_ENV, KeyRing, decrypt_file, encrypt_file, read_header


@pytest.fixture(autouse=True)
def _pregenerated_keys(monkeypatch: pytest.MonkeyPatch, rsa_keys: list[rsa.RSAPrivateKey]) -> None:
    """The CLI generates keys; hand it the session's keys to keep the tests fast."""
    supply = itertools.cycle(rsa_keys)
    monkeypatch.setattr(rsa, "generate_private_key", lambda **_: next(supply))


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["keys", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_keys_lifecycle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys, store = tmp_path / "keys", tmp_path / "store"
    code, out, _ = _run(capsys, "--key-dir", str(keys), "init")
    assert code == 0 and out.startswith("active key mk-")
    first = KeyRing(keys).active().id
    code, out, _ = _run(capsys, "--key-dir", str(keys), "init")
    assert "already present" in out and KeyRing(keys).active().id == first

    encrypt_file(b"w" * 100, store / "a.enc", keyring=KeyRing(keys), artifact_id="a", version=1)

    code, out, _ = _run(capsys, "--key-dir", str(keys), "rotate", "--rewrap", str(store))
    assert code == 0 and f"{first} is now decrypt-only" in out and "re-wrapped 1" in out
    second = KeyRing(keys).active().id
    assert read_header(store / "a.enc").key_id == second

    code, out, _ = _run(capsys, "--key-dir", str(keys), "list", "--json")
    rows = json.loads(out)
    assert [(r["id"], r["state"]) for r in rows] == [(first, "decrypt-only"), (second, "active")]

    code, out, _ = _run(capsys, "--key-dir", str(keys), "retire", first, "--artifacts", str(store))
    assert code == 0 and f"retired key {first}" in out
    code, out, _ = _run(capsys, "--key-dir", str(keys), "list")
    assert "retired" in out and "private key deleted" in out
    plain = decrypt_file(store / "a.enc", keyring=KeyRing(keys), artifact_id="a", version=1)
    assert plain == b"w" * 100


def test_retire_refused_while_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys, store = tmp_path / "keys", tmp_path / "store"
    ring = KeyRing(keys)
    first = ring.init().id
    encrypt_file(b"x", store / "a.enc", keyring=ring, artifact_id="a", version=1)
    assert _run(capsys, "--key-dir", str(keys), "rotate")[0] == 0
    code, _, err = _run(capsys, "--key-dir", str(keys), "retire", first, "--artifacts", str(store))
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1
    code, out, _ = _run(capsys, "--key-dir", str(keys), "rewrap", str(store))
    assert code == 0 and "re-wrapped 1" in out
    assert _run(capsys, "--key-dir", str(keys), "retire", first, "--artifacts", str(store))[0] == 0


def test_key_dir_from_env(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_DIR_ENV, raising=False)
    code, _, err = _run(capsys, "list")
    assert code == 1 and KEY_DIR_ENV in err
    monkeypatch.setenv(KEY_DIR_ENV, str(tmp_path / "envkeys"))
    code, out, _ = _run(capsys, "list")
    assert code == 0 and "inhouse keys init" in out


def test_retire_requires_a_check_or_force(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["keys", "--key-dir", str(tmp_path), "retire", "mk-x"])
