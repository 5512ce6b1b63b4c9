"""Per-token rate limit: 429 with Retry-After once a token's burst is spent; others unaffected."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import torch

from inhouse import services
from inhouse.config import ServeArgs, Settings
from inhouse.kinds import build_model, register_module
from inhouse.models import MLPSpec
from inhouse.serve.app import build_app
from tests.polling import wait_for

pytestmark = pytest.mark.integration


def test_a_token_over_its_rate_gets_429(
    ray_cluster: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray import serve

    spec = MLPSpec(input_dim=4, hidden=[8], num_classes=2).model_dump()
    registry = services.registry(ray_cluster)
    torch.manual_seed(0)
    info = register_module(
        registry, "rl_model", module=build_model(spec), spec=spec, metrics={}, lineage={}
    )
    registry.set_alias("rl_model", "champion", info.version)
    access = services.access(ray_cluster)
    access.create_principal(name="rl-client", kind="service", roles=["service"])
    tokens = [
        access.issue_token(principal="rl-client", expires_in=timedelta(hours=1)).token
        for _ in range(2)
    ]
    monkeypatch.setenv("INHOUSE_SERVE__RATE_LIMIT_PER_S", "0.01")
    monkeypatch.setenv("INHOUSE_SERVE__RATE_LIMIT_BURST", "3")
    app = build_app(ServeArgs(models=["rl_model"], home=str(ray_cluster.home)))
    serve.run(app, name="ratelimit", route_prefix="/rl")
    try:
        url = f"{ray_cluster.serve_url}/rl/v2/models/rl_model/infer"
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]}

        def call(token: str) -> httpx.Response:
            return httpx.post(
                url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )

        statuses = [call(tokens[0]).status_code for _ in range(5)]
        assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
        limited = call(tokens[0])
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["code"] == "rate_limited"
        assert call(tokens[1]).status_code == 200  # buckets are per token
        wait_for(  # audit entries are written in batches by the ingress
            lambda: any(
                e.outcome == "deny" and "rate" in (e.detail or "") for e in access.audit.tail(20)
            ),
            what="the rate-limit denial in the audit log",
        )
    finally:
        serve.delete("ratelimit")
