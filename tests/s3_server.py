"""A local S3-compatible server (moto's server mode) on loopback, for the object-storage tests.

:func:`s3_server` starts ``python -m moto.server`` as a subprocess on a free 127.0.0.1 port,
waits until it answers, creates a bucket and writes a 0600 credentials file; the server is
stopped (and its state, held in memory, gone) when the context ends. The session fixture
``s3`` in ``tests/conftest.py`` shares one per test session.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

BUCKET = "inhouse-test"


@dataclass(frozen=True)
class S3Server:
    """Where the test server listens, its bucket and the settings that reach it."""

    endpoint: str
    bucket: str
    credentials_file: Path

    def storage(self, **extra: Any) -> dict[str, Any]:
        """The ``storage`` settings section that reaches this server."""
        return {
            "endpoint": self.endpoint,
            "region": "us-east-1",
            "credentials_file": str(self.credentials_file),
            **extra,
        }

    def uri(self, prefix: str = "") -> str:
        """``s3://<bucket>/<prefix>-<unique>``: a fresh prefix per call, so tests never share."""
        return f"s3://{self.bucket}/{prefix or 'test'}-{uuid.uuid4().hex[:8]}"

    def keys(self, prefix: str) -> list[str]:
        """Every object key under ``prefix`` (read with boto3, as a third party would)."""
        client = self.client()
        found: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            found.extend(item["Key"] for item in page.get("Contents", []))
        return found

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def s3_server(*, bucket: str = BUCKET) -> Iterator[S3Server]:
    """Run moto's S3 server on loopback for the duration of the context."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "1"},
    )
    directory = Path(tempfile.mkdtemp(prefix="inhouse-s3-"))
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto server exited: {Path(log.name).read_text()[-2000:]}")
            try:
                httpx.get(endpoint + "/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto server did not answer within 60 s") from None
                time.sleep(0.2)
        credentials = directory / "credentials"
        credentials.write_text(
            "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
        )
        credentials.chmod(0o600)
        server = S3Server(endpoint=endpoint, bucket=bucket, credentials_file=credentials)
        server.client().create_bucket(Bucket=bucket)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        os.unlink(log.name)
        with contextlib.suppress(OSError):
            (directory / "credentials").unlink()
            directory.rmdir()
