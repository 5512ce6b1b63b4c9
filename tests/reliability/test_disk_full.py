"""A full disk during a write: a clear StorageError (507), nothing partial, the champion intact.

The disk is "filled" for real, by the kernel: a child process runs with ``RLIMIT_FSIZE`` below
the size of the artifact it writes (and SIGXFSZ ignored), so ``write`` fails with EFBIG, the
same path as ENOSPC or a quota (EDQUOT) in :mod:`inhouse.atomic`. No monkeypatching.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from cryptography.hazmat.primitives.asymmetric import rsa

from inhouse.crypto import KeyRing
from inhouse.kinds import build_model, load_module, register_module
from inhouse.models import MLPSpec
from inhouse.registry import Registry
from inhouse.schema import get_engine

LIMIT_BYTES = 256 * 1024
BIG = MLPSpec(input_dim=64, hidden=[512, 512], num_classes=10).model_dump()  # ~1.2 MB of weights

CHILD = r"""
import json, sys, torch
from pathlib import Path
from inhouse.crypto import KeyRing
from inhouse.schema import get_engine
from inhouse.errors import InhouseError
from inhouse.kinds import build_model, register_module
from inhouse.registry import Registry
from inhouse.training import save_checkpoint

db, root, keys, spec, checkpoint = sys.argv[1:6]
spec = json.loads(spec)
registry = Registry(engine=get_engine(db), root=Path(root), keyring=KeyRing(keys))
torch.manual_seed(1)
model = build_model(spec)
report = {}
def attempt(what, call):
    try:
        call()
        report[what] = {"ok": True}
    except InhouseError as exc:
        report[what] = {"error": type(exc).__name__, "status": exc.status_code,
                        "message": exc.message}
    except Exception as exc:
        report[what] = {"error": type(exc).__name__, "status": None, "message": str(exc)}
attempt("register",
        lambda: register_module(registry, "big", module=model, spec=spec, metrics={}, lineage={}))
optimizer = torch.optim.Adam(model.parameters())
attempt("checkpoint", lambda: save_checkpoint(Path(checkpoint), model=model, optimizer=optimizer,
                                              state={"epoch": 1}, keyring=registry.keyring))
print("REPORT " + json.dumps(report))
"""


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a core dump
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, LIMIT_BYTES))


@pytest.fixture(scope="module")
def full_disk_write(
    tmp_path_factory: pytest.TempPathFactory, rsa_key: rsa.RSAPrivateKey
) -> tuple[Registry, dict[str, Any]]:
    """A champion v1 written normally, then a child writing v2 and a checkpoint past the limit."""
    tmp_path = tmp_path_factory.mktemp("disk-full")
    keyring = KeyRing(tmp_path / "keys")
    keyring.init(private_key=rsa_key)
    db = f"sqlite:///{tmp_path / 'disk.db'}"
    registry = Registry(engine=get_engine(db), root=tmp_path / "registry", keyring=keyring)
    torch.manual_seed(0)
    info = register_module(
        registry, "big", module=build_model(BIG), spec=BIG, metrics={}, lineage={}
    )
    registry.set_alias("big", "champion", info.version)
    assert info.size_bytes > LIMIT_BYTES
    argv = [db, str(registry.root), str(keyring.path), json.dumps(BIG), str(tmp_path / "ckpt")]
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *argv],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, result.stderr[-2000:]
    return registry, json.loads(lines[-1].removeprefix("REPORT "))


def test_a_full_disk_fails_the_version_cleanly_and_the_champion_keeps_serving(
    full_disk_write: tuple[Registry, dict[str, Any]],
) -> None:
    registry, report = full_disk_write
    failure = report["register"]
    assert failure["error"] == "StorageError" and failure["status"] == 507, failure
    assert "File too large" in failure["message"] and "big/v2" in failure["message"]
    assert [v.version for v in registry.versions("big")] == [1]  # no row for the failed write
    assert sorted(p.name for p in (registry.root / "big").iterdir()) == ["v1"]  # no debris
    champion = registry.get("big")
    assert champion.version == 1
    module = load_module(registry, champion)  # still decrypts, verifies and runs
    torch.manual_seed(0)
    original = build_model(BIG).eval()
    x = torch.randn(3, 64)
    assert torch.equal(module(x), original(x))
    again = register_module(registry, "big", module=module, spec=BIG, metrics={}, lineage={})
    assert again.version == 2  # the number was not burnt; the disk has room again


def test_a_full_disk_during_a_checkpoint_is_a_storage_error(
    full_disk_write: tuple[Registry, dict[str, Any]],
) -> None:
    _registry, report = full_disk_write
    assert report["checkpoint"]["error"] == "StorageError", report["checkpoint"]
