"""A third model kind, defined in ``tests/toy_kind`` and registered here with one line, served
end to end over real HTTP by the real ingress, replica and explainer: adding a kind needs no
edit in ``serve/``."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from inhouse import services
from inhouse.config import ServeArgs, Settings
from inhouse.errors import InvalidInputError
from inhouse.kinds import ModelKind, kind_for_spec, register, register_module, unregister
from inhouse.serve.app import build_app
from tests.toy_kind.model import SPEC, build

pytestmark = pytest.mark.integration
MODEL = "toy-lengths"


@pytest.fixture(scope="module")
def toy(ray_cluster: Settings) -> Iterator[Settings]:
    """The toy kind registered (in this process, for this module's tests only), and a version
    of it the champion of ``MODEL``."""
    register(ModelKind("toy", ("toy_arch",), "tests.toy_kind"))
    try:
        registry = services.registry(ray_cluster)
        module = build(SPEC)
        info = register_module(registry, MODEL, module=module, spec=SPEC, metrics={}, lineage={})
        registry.set_alias(MODEL, "champion", info.version)
        yield ray_cluster
    finally:
        unregister("toy")


@pytest.fixture(scope="module")
def client(toy: Settings) -> Iterator[httpx.Client]:
    from ray import serve

    serve.run(
        build_app(ServeArgs(models=[MODEL], home=str(toy.home))),
        name="inhouse-toy",
        route_prefix="/",
    )
    token = services.ensure_client_token(toy).read_text().strip()
    with httpx.Client(
        base_url=toy.serve_url, timeout=60, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        yield http
    serve.delete("inhouse-toy")


def _v2(texts: list[str]) -> dict[str, object]:
    return {
        "id": "toy-1",
        "inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}],
    }


def test_the_toy_kind_is_served_through_the_common_routes(client: httpx.Client) -> None:
    assert kind_for_spec(SPEC).name == "toy"
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get(f"/v2/models/{MODEL}").json()
    assert meta["platform"] == "toy" and meta["versions"] == ["1"]
    v2 = client.post(f"/v2/models/{MODEL}/infer", json=_v2(["hi", "a text longer than ten"]))
    assert v2.status_code == 200, v2.text
    body = v2.json()
    assert body["id"] == "toy-1" and body["model_name"] == MODEL and body["model_version"] == "1"
    assert next(o for o in body["outputs"] if o["name"] == "label")["data"] == [0, 1]
    v1 = client.post(f"/v1/models/{MODEL}:predict", json={"instances": ["no", "certainly long"]})
    assert v1.status_code == 200 and v1.json()["classes"] == ["short", "long"]
    # The kind parses its own bodies: numbers are refused, as the toy says, with a 422.
    refused = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [1, 2]})
    assert refused.status_code == 422 and "strings" in refused.json()["error"]
    explained = client.post(f"/v1/models/{MODEL}:explain", json={"instances": ["four"]})
    assert explained.status_code == 200, explained.text
    assert explained.json()["explanations"] == [{"length": 4, "threshold": 10}]
    png = client.post(f"/v1/models/{MODEL}:explain?format=png", json={"instances": ["four"]})
    assert png.status_code == 422
    url = str(client.base_url).rstrip("/") + f"/v1/models/{MODEL}:predict"
    assert httpx.post(url, json={"instances": ["a"]}).status_code == 401


def test_a_version_its_kind_cannot_serve_is_refused_before_deploying(toy: Settings) -> None:
    registry = services.registry(toy)
    spec = {**SPEC, "threshold": 0}
    info = register_module(
        registry, "toy-broken", module=build(spec), spec=spec, metrics={}, lineage={}
    )
    registry.set_alias("toy-broken", "champion", info.version)
    with pytest.raises(InvalidInputError, match="toy-broken .champion. is a toy without"):
        build_app(ServeArgs(models=["toy-broken"], home=str(toy.home)))
