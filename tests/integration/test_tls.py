"""Serve over HTTPS with `inhouse certs init`'s private CA; plain HTTP is refused there."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import torch

from inhouse import services
from inhouse.config import ServeArgs, Settings
from inhouse.kinds import build_model, register_module
from inhouse.models import MLPSpec
from inhouse.serve.app import build_app
from inhouse.tls import init_certificates

pytestmark = pytest.mark.integration
TLS_PORT = 8002


def test_https_with_tokens_for_predict_and_explain(
    ray_cluster: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over HTTPS: 401 / 403 / 200 / 429 for both predict and explain; untrusted CA and plain
    HTTP on the TLS port fail."""
    from ray import serve

    made = init_certificates(tmp_path / "tls", hosts=["127.0.0.1", "localhost"])
    spec = MLPSpec(input_dim=4, hidden=[8], num_classes=2).model_dump()
    registry = services.registry(ray_cluster)
    torch.manual_seed(0)
    info = register_module(
        registry, "tls_model", module=build_model(spec), spec=spec, metrics={}, lineage={}
    )
    registry.set_alias("tls_model", "champion", info.version)
    access = services.access(ray_cluster)
    for name, resource in (("tls-right", "tls_model"), ("tls-wrong", "other_model")):
        access.create_principal(name=name, kind="service")
        access.assign_role(principal=name, role="predictor", resource=resource)
    token = {
        name: access.issue_token(principal=name, expires_in=timedelta(hours=1)).token
        for name in ("tls-right", "tls-wrong")
    }
    monkeypatch.setenv("INHOUSE_SERVE__RATE_LIMIT_PER_S", "0.01")
    monkeypatch.setenv("INHOUSE_SERVE__RATE_LIMIT_BURST", "6")
    serve.shutdown()
    try:
        serve.start(
            http_options={
                "host": "127.0.0.1",
                "port": TLS_PORT,
                "ssl_certfile": str(made.server_cert),
                "ssl_keyfile": str(made.server_key),
            }
        )
        serve.run(
            build_app(ServeArgs(models=["tls_model"], home=str(ray_cluster.home))),
            name="inhouse",
            route_prefix="/",
        )
        url = f"https://127.0.0.1:{TLS_PORT}"
        routes = {
            "predict": (
                "/v2/models/tls_model/infer",
                {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]},
            ),
            "explain": ("/v1/models/tls_model:explain", {"instances": [[1.0] * 4]}),
        }
        with httpx.Client(base_url=url, verify=str(made.ca_cert), timeout=30) as client:

            def status(route: str, bearer: str | None) -> int:
                path, body = routes[route]
                headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
                return client.post(path, json=body, headers=headers).status_code

            for route in routes:
                assert status(route, None) == 401
                assert status(route, token["tls-wrong"]) == 403
                assert status(route, token["tls-right"]) == 200
            # The right token has spent 2 of its burst of 6; 4 more pass, then 429.
            spent = [status("predict", token["tls-right"]) for _ in range(5)]
            assert spent == [200, 200, 200, 200, 429]
            assert status("explain", token["tls-right"]) == 429
        with pytest.raises(httpx.ConnectError):  # not trusted without our CA
            httpx.get(f"{url}/v2/health/live", timeout=10)
        with pytest.raises(httpx.HTTPError):  # no plaintext on the TLS port
            httpx.get(f"http://127.0.0.1:{TLS_PORT}/v2/health/live", timeout=10).raise_for_status()
    finally:
        serve.shutdown()
        serve.start(http_options={"host": "127.0.0.1", "port": ray_cluster.serve.port})
