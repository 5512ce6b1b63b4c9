"""Privacy costs: our envelope format vs raw AES-GCM, encrypted vs plaintext model save+load,
and the per-request cost of token authorization (cached fast path vs a full check).

- Throughput: :func:`inhouse.crypto.encrypt`/``decrypt`` (1 MiB chunks, AAD per chunk, RSA
  wrap) vs ``AESGCM`` on the same 1 MiB chunks with no framing, over the same buffer.
- Save+load: ``Registry.register`` + ``load_module`` of the same ~13 M-parameter MLP with a key
  ring vs without (plaintext safetensors).
- Auth: ``RequestAuthorizer.authorize`` (what the ingress calls) vs ``AccessService.check``
  (database read + one audit transaction per request), p50 in ms.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from inhouse.benchmarks.report import row
from inhouse.kinds import load_module, register_module

NAME = "crypto"
CHUNK = 1 << 20


def _throughput(quick: bool, ring: Any) -> list[dict[str, Any]]:
    from inhouse.crypto import decrypt, encrypt

    data = os.urandom((16 if quick else 64) * CHUNK)
    key, nonce = AESGCM.generate_key(bit_length=256), os.urandom(12)
    aes = AESGCM(key)
    repeats = 2 if quick else 3

    view, sealed_size = memoryview(data), CHUNK + 16

    def raw_roundtrip() -> None:
        # The least a raw-AESGCM artifact needs: one blob out, one plaintext back.
        blob = memoryview(
            b"".join(
                aes.encrypt(nonce, view[i : i + CHUNK], None) for i in range(0, len(data), CHUNK)
            )
        )
        b"".join(
            aes.decrypt(nonce, blob[i : i + sealed_size], None)
            for i in range(0, len(blob), sealed_size)
        )

    def ours_roundtrip() -> None:
        blob = encrypt(data, keyring=ring, artifact_id="bench/blob", version=1)
        decrypt(blob, keyring=ring, artifact_id="bench/blob", version=1)

    def best(fn: Any) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return min(times)

    mib = len(data) / CHUNK
    ours, raw = mib / best(ours_roundtrip), mib / best(raw_roundtrip)
    return [
        row(
            NAME,
            "encrypt+decrypt MiB/s, our format vs raw AESGCM",
            ours,
            raw,
            target=("ratio", ">=", 0.8, ""),
            notes=f"{mib:.0f} MiB in 1 MiB chunks, best of {repeats}; ours adds framing, "
            "per-chunk AAD and one RSA-OAEP wrap/unwrap",
        )
    ]


def _save_load(quick: bool, ring: Any, tmp: Path) -> list[dict[str, Any]]:
    from inhouse.kinds import build_model
    from inhouse.models import MLPSpec
    from inhouse.registry import Registry
    from inhouse.schema import get_engine

    hidden = [1024] * 3 if quick else [2048] * 3
    spec = MLPSpec(input_dim=1024, hidden=hidden, num_classes=10).model_dump()
    torch.manual_seed(0)
    module = build_model(spec)
    params = sum(p.numel() for p in module.parameters())
    timings: dict[str, float] = {}
    for label, keyring in (("plain", None), ("encrypted", ring)):
        registry = Registry(
            engine=get_engine(f"sqlite:///{tmp / label}.db"), root=tmp / label, keyring=keyring
        )
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            info = register_module(
                registry, "big", module=module, spec=spec, metrics={}, lineage={}
            )
            load_module(registry, info)
            best = min(best, time.perf_counter() - started)
        timings[label] = best
    return [
        row(
            NAME,
            "model save+load s, encrypted vs plaintext",
            timings["encrypted"],
            timings["plain"],
            target=("ratio", "<=", 1.10, ""),
            notes=f"{params / 1e6:.1f} M parameters ({params * 4 / 2**20:.0f} MiB fp32), "
            "register + load_module, best of 3",
        )
    ]


def _auth(quick: bool, tmp: Path) -> list[dict[str, Any]]:
    from inhouse.access import AccessService, load_or_create_pepper
    from inhouse.access.fastbench import measure
    from inhouse.schema import get_engine

    service = AccessService(
        engine=get_engine(f"sqlite:///{tmp / 'access.db'}"),
        pepper=load_or_create_pepper(tmp / "pepper"),
    )
    result = measure(service, n=500 if quick else 2000)
    return [
        row(
            NAME,
            "auth p50 ms per request, cached fast path vs full check",
            result["cached_p50_us"] / 1000,
            result["check_p50_us"] / 1000,
            target=("ours", "<=", 0.2, "ms"),
            notes=f"p99 {result['cached_p99_us']:.1f} vs {result['check_p99_us']:.0f} µs; "
            f"audit written in batches at {result['flush_us_per_entry']:.0f} µs/entry",
        )
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    from inhouse.crypto import KeyRing

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="inhouse-bench-crypto-") as name:
        tmp = Path(name)
        ring = KeyRing(tmp / "keys")
        ring.init()
        return _throughput(quick, ring) + _save_load(quick, ring, tmp) + _auth(quick, tmp)
