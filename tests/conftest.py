"""Shared fixtures: databases (SQLite file, PostgreSQL schema), the session's Ray cluster.

One local Ray cluster per test session, started the way users start it (token auth on).
Integration tests connect to it as a driver; e2e tests drive the same cluster through the
CLI. Its ports differ from the demo's so a running demo is left alone.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from inhouse import local_cluster
from inhouse.config import Settings, load_settings
from tests.s3_server import S3Server, s3_server

PG_BASE = os.environ.get("INHOUSE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _has_gpu() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the session."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    schema = f"ih_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_BASE)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_BASE} is required for integration tests: {exc}")
    yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test against the embedded SQLite and the local PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    request.getfixturevalue("pg_url")  # fails clearly if PostgreSQL is not running
    # A schema per test keeps tables (ds_digits, model_versions...) independent.
    from sqlalchemy import create_engine, text

    schema = f"ih_t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    request.addfinalizer(lambda: _drop(admin, schema))
    return f"{PG_BASE}?options=-csearch_path%3D{schema}"


def _drop(admin: object, schema: str) -> None:
    from tests.pg_schema import drop_schema

    drop_schema(admin, schema)


# INHOUSE_TEST_PORT_OFFSET lets two test sessions (e.g. two checkouts) run side by side.
_OFFSET = int(os.environ.get("INHOUSE_TEST_PORT_OFFSET", "0")) * 10
TEST_PORTS = {
    "INHOUSE_RAY__GCS_PORT": str(6391 + _OFFSET),
    "INHOUSE_RAY__DASHBOARD_PORT": str(8266 + _OFFSET),
    "INHOUSE_RAY__AGENT_PORT": str(52366 + _OFFSET),
    "INHOUSE_RAY__CLIENT_PORT": str(20001 + _OFFSET),
    "INHOUSE_SERVE__PORT": str(8001 + _OFFSET),
}
# Ray reads its auth mode when it is first imported, so the session's environment is set
# here, before any test module imports ray.
SESSION_HOME = Path(tempfile.mkdtemp(prefix="inhouse-test-"))
os.environ.update(TEST_PORTS)
os.environ.pop("INHOUSE_CONFIG", None)
os.environ.update(local_cluster.client_env(load_settings(home=str(SESSION_HOME))))
os.environ.pop("RAY_ADDRESS", None)


@pytest.fixture(scope="session")
def cluster_settings() -> Settings:
    """Settings of the session cluster: a fresh home, test ports, token auth."""
    settings = load_settings()
    assert settings.home == SESSION_HOME.resolve()
    return settings


@pytest.fixture(scope="session")
def ray_cluster(cluster_settings: Settings) -> Iterator[Settings]:
    """Start the cluster (via `ray start`, as `inhouse cluster up` does) and connect to it."""
    import ray
    from ray import serve

    local_cluster.start(cluster_settings)
    try:
        ray.init(address=f"127.0.0.1:{cluster_settings.ray.gcs_port}", log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": cluster_settings.serve.port})
        yield cluster_settings
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()
        local_cluster.stop(cluster_settings)


@pytest.fixture()
def serve_app(ray_cluster: Settings) -> Iterator[str]:
    """The app name to deploy under; deleted after the test."""
    from ray import serve

    yield "inhouse"
    serve.delete("inhouse")


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """The CLI exports its cluster settings into ``os.environ``; in-process calls must not
    leak one test's home or ports into the next."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A local S3-compatible server (moto) on 127.0.0.1 with one bucket, for the session."""
    with s3_server() as server:
        yield server
