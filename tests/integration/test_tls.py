"""Serve over HTTPS with `inhouse certs init`'s private CA; plain HTTP is refused there."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch

from inhouse import services
from inhouse.config import Settings
from inhouse.models import MLPSpec, build_model
from inhouse.tls import init_certificates
from serve.app import ServeArgs, build_app

pytestmark = pytest.mark.integration
TLS_PORT = 8002


def test_serve_over_https_with_the_private_ca(ray_cluster: Settings, tmp_path: Path) -> None:
    from ray import serve

    made = init_certificates(tmp_path / "tls", hosts=["127.0.0.1", "localhost"])
    spec = MLPSpec(input_dim=4, hidden=[8], num_classes=2).model_dump()
    registry = services.registry(ray_cluster)
    torch.manual_seed(0)
    info = registry.register(
        "tls_model", module=build_model(spec), spec=spec, metrics={}, lineage={}
    )
    registry.set_alias("tls_model", "champion", info.version)
    token = services.ensure_client_token(ray_cluster).read_text().strip()
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
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]}
        response = httpx.post(
            f"{url}/v2/models/tls_model/infer",
            json=body,
            timeout=30,
            verify=str(made.ca_cert),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200 and response.json()["model_name"] == "tls_model"
        with pytest.raises(httpx.ConnectError):  # not trusted without our CA
            httpx.get(f"{url}/v2/health/live", timeout=10)
        with pytest.raises(httpx.HTTPError):  # no plaintext on the TLS port
            httpx.get(f"http://127.0.0.1:{TLS_PORT}/v2/health/live", timeout=10).raise_for_status()
    finally:
        serve.shutdown()
        serve.start(http_options={"host": "127.0.0.1", "port": ray_cluster.serve.port})
