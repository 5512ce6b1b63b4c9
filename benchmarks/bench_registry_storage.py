"""Registry save+load on S3-compatible object storage vs the local disk (reported, no target).

The same 10.5 M-parameter MLP (3.2 M in ``--quick``) is registered and loaded back
(``register_module`` + ``load_module``, encrypted with a key ring as in production) by a
registry whose files live on the local disk and by one whose files live in a bucket of a local
S3-compatible server (moto's server mode on 127.0.0.1, started here, the one the tests use).
Best of 3 each. moto keeps objects in the memory of a Python process, so its figure bounds
what a real store costs on a fast network from above for the HTTP side but not for latency;
it says what the object-storage path itself adds (HTTP, multipart upload, ranged reads). A
fourth row compares our S3 save+load with a bare pyarrow put + get of as many bytes, to
separate what inhouse adds (sealing, hashing, the SQL row) from the transfer itself.
Without ``moto[server]`` installed the benchmark gives one skipped row.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from inhouse.benchmarks.report import row

NAME = "registry_storage"
REPEATS = 3


def _time(registry: Any, module: Any, spec: dict[str, Any]) -> tuple[float, float]:
    """Best save and best load seconds of ``REPEATS`` register + load rounds."""
    from inhouse.kinds import load_module, register_module

    saves, loads = [], []
    for _ in range(REPEATS):
        started = time.perf_counter()
        info = register_module(registry, "big", module=module, spec=spec, metrics={}, lineage={})
        saved = time.perf_counter()
        load_module(registry, info)
        saves.append(saved - started)
        loads.append(time.perf_counter() - saved)
    return min(saves), min(loads)


def _raw_transfer(filesystem: Any, root: str, data: bytes) -> float:
    """Best seconds of a bare pyarrow upload and download of ``data``."""
    from inhouse.storage.objects import read_object, write_object

    best = float("inf")
    for i in range(REPEATS):
        started = time.perf_counter()
        write_object(filesystem, f"{root}/raw-{i}", data)
        read_object(filesystem, f"{root}/raw-{i}")
        best = min(best, time.perf_counter() - started)
    return best


def run(quick: bool) -> list[dict[str, Any]]:
    try:  # the tests' server fixture: run from the repository root (`make bench`)
        missing = [m for m in ("moto", "boto3") if importlib.util.find_spec(m) is None]
        from tests.s3_server import s3_server
    except ImportError:
        missing = ["tests/s3_server.py (run from the repository root)"]
    if missing:
        return [
            row(NAME, "registry save+load s, S3 vs disk (skipped)", 0.0, None,
                notes="missing: " + ", ".join(missing) + " (pip install -e '.[dev]')")
        ]  # fmt: skip
    from inhouse.config import StorageSettings
    from inhouse.crypto import KeyRing
    from inhouse.kinds import build_model
    from inhouse.models import MLPSpec
    from inhouse.registry import Registry
    from inhouse.schema import get_engine
    from inhouse.storage import filesystem_for

    torch.set_num_threads(1)
    hidden = [1024] * 3 if quick else [2048] * 3
    spec = MLPSpec(input_dim=1024, hidden=hidden, num_classes=10).model_dump()
    torch.manual_seed(0)
    module = build_model(spec)
    params = sum(p.numel() for p in module.parameters())
    with tempfile.TemporaryDirectory(prefix="inhouse-bench-objstore-") as name, s3_server() as s3:
        tmp = Path(name)
        ring = KeyRing(tmp / "keys")
        ring.init()
        disk = Registry(
            engine=get_engine(f"sqlite:///{tmp}/disk.db"), root=tmp / "reg", keyring=ring
        )
        filesystem, root = filesystem_for(s3.uri("bench"), StorageSettings(**s3.storage()))
        remote = Registry(
            engine=get_engine(f"sqlite:///{tmp}/s3.db"), root=root, keyring=ring,
            filesystem=filesystem,
        )  # fmt: skip
        disk_save, disk_load = _time(disk, module, spec)
        s3_save, s3_load = _time(remote, module, spec)
        raw = _raw_transfer(filesystem, root, os.urandom(params * 4))
    size = f"{params / 1e6:.1f} M parameters ({params * 4 / 2**20:.0f} MiB fp32), encrypted"
    return [
        row(NAME, "registry save+load s, local S3 server vs disk", s3_save + s3_load,
            disk_save + disk_load,
            notes=f"{size}; register_module + load_module, best of {REPEATS}; moto on "
            "127.0.0.1 (reported)"),
        row(NAME, "registry save s, local S3 server vs disk", s3_save, disk_save,
            notes="seal + upload (multipart) vs seal + write + rename"),
        row(NAME, "registry load s, local S3 server vs disk", s3_load, disk_load,
            notes="download (64 MiB ranged reads) + unseal + verify vs read + unseal"),
        row(NAME, "registry save+load s on S3 vs bare pyarrow put+get", s3_save + s3_load, raw,
            notes="the same number of random bytes written and read back with pyarrow.fs alone"),
    ]  # fmt: skip
