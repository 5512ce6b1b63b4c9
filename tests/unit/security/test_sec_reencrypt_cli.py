"""``inhouse keys rotate --reencrypt`` and ``keys reencrypt``: help, summaries, a hard crash."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from inhouse.cli import build_parser
from inhouse.cli import main as inhouse_main
from inhouse.cli.keys_cmd import main
from inhouse.crypto import KeyRing, decrypt_file, encrypt_file, key_usage, read_header

DATA = {"a": os.urandom(150), "b": os.urandom(90)}


@pytest.fixture(scope="module")
def keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=3072) for _ in range(2)]


@pytest.fixture(autouse=True)
def _pregenerated_keys(monkeypatch: pytest.MonkeyPatch, keys: list[rsa.RSAPrivateKey]) -> None:
    supply = itertools.cycle(keys)
    monkeypatch.setattr(rsa, "generate_private_key", lambda **_: next(supply))


def _fill(ring: KeyRing, store: Path) -> dict[Path, bytes]:
    """A checkpoint and a registry file; they are found by their header, not their name."""
    paths = {"a": store / "run-1" / "epoch-2" / "state.json.enc", "b": store / "m" / "v1" / "x.enc"}
    for name, path in paths.items():
        encrypt_file(DATA[name], path, keyring=ring, artifact_id=name, version=1, chunk_size=64)
    return {path: path.read_bytes() for path in paths.values()}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["keys", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_rotate_help_says_when_to_reencrypt(capsys: pytest.CaptureFixture[str]) -> None:
    for parser_argv in (["keys", "rotate", "--help"], ["keys", "reencrypt", "--help"]):
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args(parser_argv)
        assert info.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "--reencrypt" in out and "routine rotation" in out
        assert "backup" in out and "leaked" in out and "fresh data key" in out


def test_rewrap_and_reencrypt_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["keys", "--key-dir", "k", "rotate", "--rewrap", "a", "--reencrypt", "b"])
    assert info.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_rotate_reencrypt_then_retire(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys_dir, store = tmp_path / "keys", tmp_path / "store"
    ring = KeyRing(keys_dir)
    old = ring.init().id
    before = _fill(ring, store)

    code, out, err = _run(capsys, "--key-dir", str(keys_dir), "rotate", "--reencrypt", str(store))
    new = KeyRing(keys_dir).active().id
    assert code == 0, err
    assert f"{old} is now decrypt-only" in out and "re-encrypted 2 artifact(s)" in out
    assert f"inhouse keys retire {old} --artifacts {store}" in out
    assert "re-encrypting" in err  # the progress bar
    for path, old_bytes in before.items():
        assert read_header(path).key_id == new
        assert read_header(path).data_key_id != read_header(old_bytes).data_key_id

    code, out, _ = _run(
        capsys, "--key-dir", str(keys_dir), "retire", old, "--artifacts", str(store)
    )
    assert code == 0 and f"retired key {old}" in out
    for path in before:
        name = "a" if path.name == "state.json.enc" else "b"
        assert (
            decrypt_file(path, keyring=KeyRing(keys_dir), artifact_id=name, version=1) == DATA[name]
        )


def test_reencrypt_reports_what_it_could_not_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys_dir, store = tmp_path / "keys", tmp_path / "store"
    ring = KeyRing(keys_dir)
    ring.init()
    before = _fill(ring, store)
    tampered = store / "m" / "v1" / "x.enc"
    tampered.write_bytes(before[tampered][:-1] + bytes([before[tampered][-1] ^ 1]))

    code, out, err = _run(capsys, "--key-dir", str(keys_dir), "reencrypt", str(store))
    assert code == 1 and "re-encrypted 1 artifact(s)" in out
    assert "error: 1 artifact(s) could not be re-encrypted" in err and str(tampered) in err
    code, _, err = _run(capsys, "--key-dir", str(keys_dir), "reencrypt")
    assert code == 1 and err.startswith("error: name the artifact")


def test_full_cli_defaults_to_registry_and_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INHOUSE_KEY_DIR", raising=False)
    monkeypatch.delenv("INHOUSE_TOKEN", raising=False)
    home = tmp_path / "home"
    ring = KeyRing(home / "keys")
    old = ring.init().id
    before = _fill(ring, home / "runs")
    assert inhouse_main(["--home", str(home), "keys", "rotate", "--reencrypt"]) == 0
    assert "re-encrypted 2 artifact(s)" in capsys.readouterr().out
    assert old not in key_usage([home / "runs"])
    for path, old_bytes in before.items():
        assert read_header(path).data_key_id != read_header(old_bytes).data_key_id


CRASHING_CHILD = textwrap.dedent(
    """
    import os, sys
    from inhouse.crypto import KeyRing, reencryption
    real_seal, calls = reencryption.seal, []

    class Dies:
        def __init__(self, out):
            self.out = out
        def write(self, data):
            self.out.write(data)
            self.out.flush()
            os._exit(9)  # killed mid-write: no cleanup, the temporary file stays

    def seal(out, *args, **kwargs):
        calls.append(1)
        return real_seal(Dies(out) if len(calls) == 2 else out, *args, **kwargs)

    reencryption.seal = seal
    reencryption.reencrypt(sys.argv[2], keyring=KeyRing(sys.argv[1]))
    reencryption.reencrypt(sys.argv[3], keyring=KeyRing(sys.argv[1]))
    """
)


def test_a_killed_process_leaves_old_or_new_files_and_a_resume_finishes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys_dir, store = tmp_path / "keys", tmp_path / "store"
    ring = KeyRing(keys_dir)
    old = ring.init().id
    before = _fill(ring, store)
    ring.rotate()
    first, second = sorted(before)
    child = subprocess.run(
        [sys.executable, "-c", CRASHING_CHILD, str(keys_dir), str(first), str(second)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == 9, child.stderr
    assert read_header(first).key_id != old and second.read_bytes() == before[second]
    leftovers = list(store.rglob("*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].parent == second.parent
    assert set(key_usage([store])) == {old, ring.active().id}  # the leftover is not counted

    assert _run(capsys, "--key-dir", str(keys_dir), "reencrypt", str(store))[0] == 0
    code, _, err = _run(
        capsys, "--key-dir", str(keys_dir), "retire", old, "--artifacts", str(store)
    )
    assert code == 0, err
    for path in before:
        name = "a" if path.name == "state.json.enc" else "b"
        plain = decrypt_file(path, keyring=KeyRing(keys_dir), artifact_id=name, version=1)
        assert plain == DATA[name]
