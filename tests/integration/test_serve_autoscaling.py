"""Serve autoscaling, really exercised: replicas are added under load and removed after it.

The model deployment declares ``autoscaling_config`` from ``ServeSettings`` (here through the
``INHOUSE_SERVE__*`` variables a user would set). A steady HTTP load through the ingress raises
the in-flight requests above the target, Serve adds replicas; once the load stops it removes
them. ``serve.status()`` is polled throughout and the replica counts are recorded.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest
import torch

from inhouse import services
from inhouse.config import ServeArgs, Settings, load_settings
from inhouse.kinds import build_model, register_module
from inhouse.models import MLPSpec
from inhouse.serve.app import build_app, replica_scaling
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.scale]

MODEL = "digits_autoscale"
DEPLOYMENT = f"model-{MODEL}"
AUTOSCALING_ENV = {
    "INHOUSE_SERVE__AUTOSCALING": "true",
    "INHOUSE_SERVE__MIN_REPLICAS": "1",
    "INHOUSE_SERVE__MAX_REPLICAS": "3",
    "INHOUSE_SERVE__TARGET_ONGOING_REQUESTS": "2",
    "INHOUSE_SERVE__UPSCALE_DELAY_S": "1",
    "INHOUSE_SERVE__DOWNSCALE_DELAY_S": "2",
    "INHOUSE_SERVE__LOOK_BACK_PERIOD_S": "2",
    "INHOUSE_SERVE__METRICS_INTERVAL_S": "0.5",
}
CLIENTS = 16


def test_settings_turn_into_serve_autoscaling_config() -> None:
    fixed = load_settings(serve={"num_replicas": 2}).serve
    assert replica_scaling(fixed) == {"num_replicas": 2}
    scaled = load_settings(serve={"autoscaling": True, "min_replicas": 2, "max_replicas": 5}).serve
    config = replica_scaling(scaled)["autoscaling_config"]
    assert config["min_replicas"] == 2 and config["max_replicas"] == 5
    from ray.serve.config import AutoscalingConfig

    AutoscalingConfig(**config)  # Serve itself accepts every key and value


def _running_replicas(app: str) -> int:
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None or DEPLOYMENT not in status.deployments:
        return 0
    states = status.deployments[DEPLOYMENT].replica_states
    return int(sum(n for state, n in states.items() if str(state).endswith("RUNNING")))


def _register(settings: Settings) -> None:
    torch.manual_seed(0)
    spec = MLPSpec(input_dim=64, num_classes=10).model_dump()
    model = build_model(spec)
    model[0].fit(torch.rand(32, 64) * 16)  # type: ignore[operator]
    registry = services.registry(settings)
    info = register_module(
        registry, MODEL, module=model, spec=spec, metrics={}, lineage={"test": True}
    )
    registry.set_alias(MODEL, "champion", info.version)


def test_replicas_are_added_under_load_and_removed_after(
    ray_cluster: Settings, serve_app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray import serve

    for key, value in AUTOSCALING_ENV.items():
        monkeypatch.setenv(key, value)
    _register(ray_cluster)
    serve.run(
        build_app(ServeArgs(models=[MODEL], home=str(ray_cluster.home), batching=False)),
        name=serve_app,
        route_prefix="/",
    )
    assert _running_replicas(serve_app) == 1
    # The load comes through one DeploymentHandle driven by one event loop, as the ingress
    # sends it: the in-flight requests it reports are what Serve scales on. (On 2 cores the
    # HTTP ingress cannot queue enough work in front of a tiny MLP; and a handle called from
    # many threads reports each thread's share under one id, which hides the load.)
    handle = serve.get_deployment_handle(DEPLOYMENT, app_name=serve_app)
    rows = np.full((8, 64), 3.0, dtype=np.float32)
    stop = threading.Event()
    answered: list[int] = []
    failed: list[str] = []
    timeline: list[tuple[float, int]] = []
    started = time.monotonic()

    async def client() -> None:
        while not stop.is_set():
            try:
                answered.append(len((await handle.predict.remote(rows))["probabilities"]))
            except Exception as exc:  # noqa: BLE001 - counted, the test asserts none
                failed.append(repr(exc))

    async def load() -> None:
        await asyncio.gather(*(client() for _ in range(CLIENTS)))

    def sample() -> int:
        """The running replica count, asked of Serve at most twice a second."""
        now = time.monotonic() - started
        if timeline and now - timeline[-1][0] < 0.5:
            return timeline[-1][1]
        timeline.append((round(now, 1), _running_replicas(serve_app)))
        return timeline[-1][1]

    loader = threading.Thread(target=asyncio.run, args=(load(),), daemon=True)
    loader.start()
    try:
        wait_for(lambda: sample() >= 2, timeout_s=60, what="a second replica under load")
    finally:
        stop.set()
        loader.join(timeout=30)
    peak = max(count for _, count in timeline)
    wait_for(lambda: sample() == 1, timeout_s=60, what="scale back to one replica when idle")

    print("replicas over time (s, running):", timeline)
    assert peak >= 2
    assert timeline[-1][1] == 1
    assert failed == [] and len(answered) > 50 and set(answered) == {8}
    # The HTTP path still answers on the one replica left.
    token = services.ensure_client_token(ray_cluster).read_text().strip()
    body = {"instances": rows.tolist()}
    with httpx.Client(base_url=ray_cluster.serve_url, timeout=30) as http:
        response = http.post(
            f"/v1/models/{MODEL}:predict", json=body, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200 and len(response.json()["predictions"]) == 8
