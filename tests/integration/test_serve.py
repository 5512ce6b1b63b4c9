"""The Serve app over real HTTP: both protocols, every error status, never a 500."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import torch
from sqlalchemy import update
from torch.utils.data import DataLoader, TensorDataset

from inhouse import services
from inhouse.access import AccessService, IssuedToken
from inhouse.access.records import TokenRecord
from inhouse.canary import Canary
from inhouse.config import CoordinatorSettings, ServeArgs, Settings
from inhouse.coordinator import CoordinatorStore
from inhouse.coordinator.control import start
from inhouse.coordinator.service import Coordinator
from inhouse.data import read_rows, seed
from inhouse.errors import NotFoundError
from inhouse.kinds import build_model, load_module, register_module
from inhouse.kinds.updating import Measured, RetrainJob
from inhouse.models import MLPSpec
from inhouse.schema import get_engine
from inhouse.serve.app import build_app
from inhouse.training import evaluate, train_one_epoch
from tests.polling import wait_for

pytestmark = pytest.mark.integration
MODEL = "digits_http"


@pytest.fixture(scope="module")
def registered(ray_cluster: Settings) -> tuple[Settings, torch.Tensor, torch.Tensor]:
    """A digits model trained in-process (fast) and registered as champion."""
    engine = get_engine(ray_cluster.db_url)
    seed(engine, "digits")
    train, test = (read_rows(engine, "digits", split=s) for s in ("train", "test"))
    torch.manual_seed(0)
    spec = MLPSpec(input_dim=64, num_classes=10).model_dump()
    model = build_model(spec)
    model[0].fit(train.x)  # type: ignore[operator]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(5):
        train_one_epoch(model, DataLoader(TensorDataset(train.x, train.y), 32, True), optimizer)
    accuracy = evaluate(model, test.x, test.y).accuracy
    registry = services.registry(ray_cluster)
    info = register_module(
        registry,
        MODEL,
        module=model,
        spec=spec,
        metrics={"test_accuracy": accuracy},
        lineage={"dataset": "digits"},
    )
    registry.set_alias(MODEL, "champion", info.version)
    return ray_cluster, test.x, test.y


@pytest.fixture(scope="module")
def client(registered: tuple[Settings, torch.Tensor, torch.Tensor]) -> httpx.Client:
    from ray import serve

    settings = registered[0]
    app = build_app(ServeArgs(models=[MODEL], home=str(settings.home)))
    serve.run(app, name="inhouse", route_prefix="/")
    token = services.ensure_client_token(settings).read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=settings.serve_url, timeout=30, headers=headers) as http:
        yield http
    serve.delete("inhouse")


def _v2(rows: list[list[float]]) -> dict:
    return {
        "id": "t",
        "inputs": [{"name": "input", "shape": [len(rows), 64], "datatype": "FP32", "data": rows}],
    }


def test_health_and_metadata(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    meta = client.get(f"/v2/models/{MODEL}").json()
    assert meta["inputs"][0]["shape"] == [-1, 64] and meta["versions"] == ["1"]
    assert client.get(f"/v2/models/{MODEL}/ready").json()["ready"] is True
    assert client.get("/v2/models/nope").status_code == 404


def test_v2_and_v1_predict_the_held_out_digits(client: httpx.Client, registered: tuple) -> None:
    _settings, x, y = registered
    rows = x[:100].tolist()
    v2 = client.post(f"/v2/models/{MODEL}/infer", json=_v2(rows))
    assert v2.status_code == 200
    body = v2.json()
    assert body["id"] == "t" and body["model_name"] == MODEL and body["model_version"] == "1"
    labels = {o["name"]: o for o in body["outputs"]}["label"]["data"]
    assert sum(int(a == b) for a, b in zip(labels, y[:100].tolist(), strict=True)) >= 93
    v1 = client.post(f"/v1/models/{MODEL}:predict", json={"instances": rows[:10]})
    assert v1.status_code == 200 and v1.json()["predictions"] == labels[:10]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (f"/v2/models/{MODEL}/infer", b"{not json", 400),
        (
            f"/v2/models/{MODEL}/infer",
            b'{"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [NaN]}]}',
            400,
        ),
        (f"/v2/models/{MODEL}/infer", json.dumps(_v2([[1.0] * 63])).encode(), 422),
        (f"/v2/models/{MODEL}/infer", json.dumps(_v2([["a"] * 64])).encode(), 422),
        (f"/v2/models/{MODEL}/infer", b"[" * 5000 + b"]" * 5000, 400),
        (f"/v2/models/{MODEL}/infer", b"{" + b" " * (2 * 1024 * 1024) + b"}", 413),
        ("/v2/models/unknown/infer", json.dumps(_v2([[1.0] * 64])).encode(), 404),
        (f"/v1/models/{MODEL}:predict", b'{"instances": [[1, 2]]}', 422),
        ("/v1/models/..%2F..%2Fetc:predict", b'{"instances": [[1]]}', 404),
    ],
)
def test_bad_requests_get_clear_4xx(
    client: httpx.Client, path: str, body: bytes, status: int
) -> None:
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["error"]


def test_replica_keeps_serving_under_concurrent_good_and_bad_load(
    client: httpx.Client, registered: tuple
) -> None:
    _settings, x, _y = registered
    good = json.dumps(_v2(x[:4].tolist())).encode()
    bad = b'{"inputs": 3}'

    def call(i: int) -> int:
        body = bad if i % 3 == 0 else good
        return client.post(f"/v2/models/{MODEL}/infer", content=body).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(call, range(192)))
    assert statuses.count(422) == 64 and statuses.count(200) == 128
    assert client.get("/v2/health/ready").status_code == 200


def _token(access: AccessService, principal: str, role: str, resource: str) -> IssuedToken:
    try:
        access.get_principal(name=principal)
    except NotFoundError:
        access.create_principal(name=principal, kind="service")
        access.assign_role(principal=principal, role=role, resource=resource)
    return access.issue_token(principal=principal, expires_in=timedelta(days=1))


def test_every_model_route_enforces_tokens(client: httpx.Client, registered: tuple) -> None:
    settings = registered[0]
    access = services.access(settings)
    right = _token(access, "route-right", "predictor", MODEL)
    wrong = _token(access, "route-wrong", "predictor", "another_model")
    revoked = _token(access, "route-right", "predictor", MODEL)
    access.revoke_token(token_id=revoked.token_id)
    expired = _token(access, "route-right", "predictor", MODEL)
    with access._engine.begin() as conn:  # expire it without waiting
        conn.execute(
            update(TokenRecord)
            .where(TokenRecord.token_id == expired.token_id)
            .values(expires_at=datetime.now(timezone.utc) - timedelta(minutes=1))
        )
    body = json.dumps(_v2([[1.0] * 64])).encode()
    routes = [
        ("GET", f"/v2/models/{MODEL}", None),
        ("GET", f"/v2/models/{MODEL}/ready", None),
        ("POST", f"/v2/models/{MODEL}/infer", body),
        ("GET", f"/v1/models/{MODEL}", None),
        (
            "POST",
            f"/v1/models/{MODEL}:predict",
            json.dumps({"instances": [[1.0] * 64]}).encode(),
        ),
        (
            "POST",
            f"/v1/models/{MODEL}:explain",
            json.dumps({"instances": [[1.0] * 64], "options": {"n_steps": 8}}).encode(),
        ),
    ]
    cases = [
        (None, 401),
        ("Basic abc", 401),
        ("Bearer " + expired.token, 401),
        ("Bearer " + revoked.token, 401),
        ("Bearer " + wrong.token, 403),
        ("Bearer " + right.token, 200),
    ]
    for method, path, content in routes:
        for header, status in cases:
            headers = {"content-type": "application/json"}
            if header is not None:
                headers["Authorization"] = header
            with httpx.Client(base_url=settings.serve_url, timeout=30) as anonymous:
                response = anonymous.request(method, path, content=content, headers=headers)
            assert response.status_code == status, (method, path, header, response.text)
            if status == 401:
                assert response.headers["www-authenticate"] == "Bearer"
    # Audit entries are written in batches by the ingress (every 50 ms).
    expected = len(routes) * len(cases)
    wait_for(lambda: access.audit.verify().checked >= expected, what="the audit entries")
    assert access.audit.verify().ok
    assert client.get("/v2/health/live").status_code == 200  # probes stay open


def test_explainer_sidecar_answers_json_and_png(client: httpx.Client, registered: tuple) -> None:
    _settings, x, _y = registered
    rows = x[:2].tolist()
    response = client.post(f"/v1/models/{MODEL}:explain", json={"instances": rows, "method": "ig"})
    assert response.status_code == 200, response.text
    body = response.json()
    first = body["explanations"][0]
    assert len(first["attributions"]) == 64 and first["prediction"]["name"]
    values = list(first["attributions"].values())
    assert abs(values[0]) >= abs(values[-1])  # ordered by |attribution|
    assert body["image"] == {"height": 8, "width": 8}  # digits' pixels: a heat map
    assert [len(line) for line in first["heatmap"]] == [8] * 8
    shap = client.post(
        f"/v1/models/{MODEL}:explain", json={"instances": rows[:1], "method": "shap"}
    )
    assert shap.status_code == 200 and shap.json()["method"] == "shap"
    png = client.post(f"/v1/models/{MODEL}:explain?format=png", json={"instances": rows[:1]})
    assert png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    too_big = client.post(
        f"/v1/models/{MODEL}:explain", json={"instances": rows[:1], "options": {"n_steps": 100000}}
    )
    assert too_big.status_code == 422  # refused before any work
    assert (
        client.post(f"/v1/models/{MODEL}:explain", json={"instances": [[1, 2]]}).status_code == 422
    )
    assert client.get("/v2/health/ready").status_code == 200  # predictions unaffected


def test_explain_needs_the_explain_permission(client: httpx.Client, registered: tuple) -> None:
    settings = registered[0]
    access = services.access(settings)
    try:
        access.get_principal(name="predict-only")
    except NotFoundError:
        access.create_principal(name="predict-only", kind="service")
        access.grant(principal="predict-only", action="model:predict", resource=MODEL)
    token = access.issue_token(principal="predict-only", expires_in=timedelta(hours=1)).token
    headers = {"Authorization": f"Bearer {token}"}
    body = {"instances": [[1.0] * 64]}
    with httpx.Client(base_url=settings.serve_url, timeout=30, headers=headers) as limited:
        assert limited.post(f"/v1/models/{MODEL}:predict", json=body).status_code == 200
        assert limited.post(f"/v1/models/{MODEL}:explain", json=body).status_code == 403


@dataclass
class _Load:
    statuses: list[int] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _steady_load(client: httpx.Client, body: dict, clients: int = 2) -> Iterator[_Load]:
    """``clients`` threads posting ``body`` without pause until the block ends."""
    load, done = _Load(), threading.Event()

    def steady() -> None:
        while not done.is_set():
            response = client.post(f"/v2/models/{MODEL}/infer", json=body)
            load.statuses.append(response.status_code)
            if response.status_code == 200:
                load.versions.append(response.json()["model_version"])

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(steady) for _ in range(clients)]
        try:
            yield load
        finally:
            done.set()
            for future in futures:
                future.result()


def test_replicas_follow_promotion_and_rollback_without_a_failed_request(
    registered: tuple[Settings, torch.Tensor, torch.Tensor], client: httpx.Client
) -> None:
    """The coordinator only moves the champion alias; every replica must follow it."""
    settings, x, _ = registered
    registry = services.registry(settings)
    old = registry.get(MODEL)
    new = register_module(
        registry,
        MODEL,
        module=load_module(registry, old),
        spec=old.spec,
        metrics=old.metrics,
        lineage={"dataset": "digits", "parent": {"version": old.version}},
    )
    body = _v2(x[:2].tolist())
    with _steady_load(client, body) as load:
        registry.set_alias(MODEL, "champion", new.version)  # promotion
        wait_for(lambda: str(new.version) in load.versions, timeout_s=30, what="the new champion")
        registry.set_alias(MODEL, "champion", old.version)  # rollback
        wait_for(
            lambda: (
                client.post(f"/v2/models/{MODEL}/infer", json=body).json()["model_version"]
                == str(old.version)
            ),
            timeout_s=30,
            what="the rolled-back champion served",
        )
    assert str(new.version) in load.versions and set(load.statuses) == {200}


def test_a_canary_gets_its_share_then_is_promoted_or_rolled_back_without_failed_requests(
    registered: tuple[Settings, torch.Tensor, torch.Tensor], client: httpx.Client
) -> None:
    """The ingress sends the canary its share, counts what it did, and answers a request the
    canary failed from the champion; the coordinator promotes a healthy canary and rolls back
    one built for another schema (every request it gets fails)."""
    settings, x, _ = registered
    registry, engine = services.registry(settings), services.engine(settings)
    champion = registry.get(MODEL)
    healthy = register_module(
        registry,
        MODEL,
        module=load_module(registry, champion),
        spec=champion.spec,
        metrics=champion.metrics,
        lineage={"dataset": "digits", "parent": {"version": champion.version}},
    )
    spec32 = MLPSpec(input_dim=32, num_classes=10).model_dump()  # another schema
    broken = register_module(
        registry,
        MODEL,
        module=build_model(spec32),
        spec=spec32,
        metrics={},
        lineage={"dataset": "digits"},
    )
    cs = CoordinatorSettings(  # the healthy canary is the champion's module: its latency
        model=MODEL,  # differs only by 2-core noise, so the latency limit is loose here
        canary_share=0.3,
        canary_window_s=600,
        canary_min_requests=10,
        canary_max_latency_ratio=10.0,
    )
    start(registry, cs)
    store = CoordinatorStore(engine)
    now = [time.time()]
    coordinator = Coordinator(
        engine=engine, registry=registry, settings=cs, retrain=_no_retrain, clock=lambda: now[0]
    )

    def open_canary(version: int, baseline: int) -> None:
        canary = Canary(version, baseline, 0.3, time.time(), time.time() + 600)
        state = store.load(MODEL)
        store.commit(state.replace(canary=canary), aliases={"candidate": version})

    body = _v2(x[:2].tolist())
    with _steady_load(client, body) as load:
        versions = load.versions
        open_canary(healthy.version, champion.version)
        wait_for(
            lambda: versions[-300:].count(str(healthy.version)) >= 30,
            timeout_s=60,
            what="the canary answering its share",
        )
        recent = versions[-300:]
        share = recent.count(str(healthy.version)) / len(recent)
        assert 0.1 < share < 0.5, share  # 0.3 of the requests, give or take
        assert coordinator.step().action == "canary"  # inside its window
        now[0] = time.time() + 601
        time.sleep(2.5)  # one more traffic flush by the ingress
        report = coordinator.step()
        assert report.action == "promoted", report.reason
        assert report.figures["candidate"]["requests"] >= 10
        assert report.figures["candidate"]["errors"] == 0
        assert registry.aliases(MODEL)["champion"] == healthy.version
        wait_for(
            lambda: set(versions[-20:]) == {str(healthy.version)},
            timeout_s=30,
            what="the promoted canary answering everything",
        )
        now[0] = time.time()
        open_canary(broken.version, healthy.version)
        wait_for(
            lambda: coordinator.step().action == "rolled_back",
            timeout_s=60,
            what="the broken canary rolled back",
        )
    assert set(load.statuses) == {200}  # the broken canary's requests got the champion's answer
    assert str(broken.version) not in versions
    assert "candidate" not in registry.aliases(MODEL)
    last = store.history(MODEL)[-1]
    assert last.kind == "canary_rolled_back" and "error rate 100.00%" in last.detail["reasons"][0]
    registry.set_alias(MODEL, "champion", champion.version)  # as the other tests expect


def _no_retrain(_settings: CoordinatorSettings, _job: RetrainJob) -> Measured:
    raise AssertionError("no retrain runs while a canary is watched")
