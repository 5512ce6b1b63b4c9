"""The deployment the load, fault and fuzz tests share: the real app, a trained digits model,
model-replica autoscaling on (2..3 replicas), and one token per authentication case.

Used as a module-scoped fixture, so each module deploys once (``serve_digits``).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update

from inhouse import services
from inhouse.access import AccessService, IssuedToken
from inhouse.access.records import TokenRecord
from inhouse.benchmarks.bench_load import autoscaling_env, replica_names, settings_env
from inhouse.config import Settings
from inhouse.data import read_rows, seed
from inhouse.errors import NotFoundError
from inhouse.kinds import register_module
from tests.digits_parent import train_parent

MODEL = "digits_rel"
DEPLOYMENT = f"model-{MODEL}"
# A distinctive value sent in payloads: it must never reach a log file.
PAYLOAD_MARKER = 13.371337
REQUEST_ID_MARKER = "payload-marker-7f3a9c"


@dataclass(frozen=True)
class Served:
    """The running app: where it is, the test rows and a header per authentication case."""

    settings: Settings
    app: str
    base_url: str  # with the route prefix
    auth: dict[str, str | None]  # case -> Authorization header (None: no header)
    rows: list[list[float]]
    labels: list[int]

    @property
    def headers(self) -> dict[str, str]:
        """Headers of a client with the right token."""
        return {"Authorization": str(self.auth["right"])}

    @property
    def raw_tokens(self) -> list[str]:
        """Every token secret issued for the tests (to look for in logs)."""
        return [h.split(" ", 1)[1] for case, h in self.auth.items() if h and case != "malformed"]

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30, headers=self.headers, **kwargs)

    def replicas(self) -> list[str]:
        return replica_names(self.app, DEPLOYMENT)


def v2_body(rows: list[list[float]], request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [{"name": "input", "shape": [len(rows), 64], "datatype": "FP32", "data": rows}]
    }
    if request_id is not None:
        body["id"] = request_id
    return body


def route_bodies(rows: list[list[float]]) -> dict[str, bytes]:
    """A valid body for each POST route (keyed by the OpenAPI path)."""
    return {
        "/v2/models/{name}/infer": json.dumps(v2_body(rows[:1])).encode(),
        "/v1/models/{name}:predict": json.dumps({"instances": rows[:1]}).encode(),
        "/v1/models/{name}:explain": json.dumps(
            {"instances": rows[:1], "options": {"n_steps": 8}}
        ).encode(),
    }


def _issue(access: AccessService, principal: str, resource: str) -> IssuedToken:
    try:
        access.get_principal(name=principal)
    except NotFoundError:
        access.create_principal(name=principal, kind="service")
        access.assign_role(principal=principal, role="predictor", resource=resource)
    return access.issue_token(principal=principal, expires_in=timedelta(days=1))


def _auth_cases(settings: Settings) -> dict[str, str | None]:
    access = services.access(settings)
    right = _issue(access, "rel-right", MODEL)
    wrong = _issue(access, "rel-wrong", "another_model")
    revoked = _issue(access, "rel-right", MODEL)
    access.revoke_token(token_id=revoked.token_id)
    expired = _issue(access, "rel-right", MODEL)
    with access._engine.begin() as conn:  # expire it without waiting
        conn.execute(
            update(TokenRecord)
            .where(TokenRecord.token_id == expired.token_id)
            .values(expires_at=datetime.now(timezone.utc) - timedelta(minutes=1))
        )
    return {
        "none": None,
        "malformed": "Bearer ih_not_a_token",
        "expired": "Bearer " + expired.token,
        "revoked": "Bearer " + revoked.token,
        "wrong_scope": "Bearer " + wrong.token,
        "right": "Bearer " + right.token,
    }


def _champion(settings: Settings) -> tuple[list[list[float]], list[int]]:
    """Train the digits parent once per session and make it the champion of ``MODEL``."""
    engine = services.engine(settings)
    seed(engine, "digits")
    registry = services.registry(settings)
    if not registry.versions(MODEL):
        parent = train_parent(engine)
        info = register_module(
            registry,
            MODEL,
            module=parent.module,
            spec=parent.spec,
            metrics={},
            lineage=parent.lineage,
        )
        registry.set_alias(MODEL, "champion", info.version)
    test = read_rows(engine, "digits", split="test")
    return test.x[:200].tolist(), test.y[:200].tolist()


@contextlib.contextmanager
def serve_digits(settings: Settings, *, app: str) -> Iterator[Served]:
    """Deploy the app as ``app`` at ``/<app>`` (2..3 model replicas); deleted on exit."""
    from ray import serve

    from inhouse.config import ServeArgs
    from inhouse.serve.app import build_app

    rows, labels = _champion(settings)
    auth = _auth_cases(settings)
    with settings_env(**autoscaling_env()):
        application = build_app(ServeArgs(models=[MODEL], home=str(settings.home)))
    serve.run(application, name=app, route_prefix=f"/{app}")
    try:
        yield Served(settings, app, f"{settings.serve_url}/{app}", auth, rows, labels)
    finally:
        serve.delete(app)


def ray_log_dir() -> Path:
    """The log directory of the session cluster this driver is connected to."""
    import ray

    node = ray._private.worker._global_node  # the connected node knows its session dir
    return Path(node.get_session_dir_path()) / "logs"


def new_request_id() -> str:
    return f"{REQUEST_ID_MARKER}-{uuid.uuid4().hex[:8]}"
