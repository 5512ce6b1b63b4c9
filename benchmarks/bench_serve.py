"""The inhouse Serve app over HTTP vs the same model called in-process, and vs bare Serve.

Overhead = HTTP latency - in-process ``module(x)`` latency, for sequential single-row v2 infer
requests, for our app (ingress -> model replica) and for a bare one-deployment Serve app
running the same model, side by side on one local Ray. The hops are measured one by one
(ingress alone, handle -> replica with and without ``@serve.batch``, the ingress's protocol
work in-process) so a gap can be attributed. Then 32 concurrent clients measure throughput
with dynamic batching on vs off, and bare Serve under the same load.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from inhouse.benchmarks.common import (
    free_port,
    local_ray,
    median,
    percentile,
    time_calls_ms,
    torch_threads,
    train_digits,
)
from inhouse.benchmarks.load import sequential_ms, throughput
from inhouse.benchmarks.report import row
from inhouse.kinds import register_module

NAME = "serve"
MODEL = "digits"
INFER = f"/v2/models/{MODEL}/infer"


def _bare_app(spec: dict[str, Any], state: dict[str, torch.Tensor], max_ongoing: int) -> Any:
    """A one-deployment app: parse the same v2 body, run the model, return JSON."""
    from ray import serve
    from starlette.requests import Request

    @serve.deployment(
        name="bare", max_ongoing_requests=max_ongoing, ray_actor_options={"num_cpus": 0.5}
    )
    class Bare:
        def __init__(self, spec: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
            from inhouse.kinds import build_model

            torch.set_num_threads(1)
            self.module = build_model(spec)
            self.module.load_state_dict(state)
            self.module.eval()

        async def __call__(self, request: Request) -> dict[str, Any]:
            body = await request.json()
            x = np.asarray(body["inputs"][0]["data"], dtype=np.float32).reshape(-1, 64)
            with torch.inference_mode():
                p = torch.softmax(self.module(torch.from_numpy(x)), dim=1).numpy()
            return {
                "outputs": [
                    {
                        "name": "probabilities",
                        "shape": list(p.shape),
                        "datatype": "FP32",
                        "data": p.ravel().tolist(),
                    }
                ]
            }

    return Bare.bind(spec, state)


def _register(home: Path, epochs: int) -> tuple[Any, dict[str, Any], np.ndarray, str]:
    """Train the digits model in-process, make it the champion of ``home``'s (encrypted)
    registry, and issue a predictor token; returns ``(model, spec, one row, token)``."""
    from inhouse import services
    from inhouse.config import load_settings
    from inhouse.data import read_rows, seed

    settings = load_settings(home=str(home))
    engine = services.engine(settings)
    seed(engine, "digits")
    train, test = (read_rows(engine, "digits", split=s) for s in ("train", "test"))
    model, spec = train_digits(train.x, train.y, epochs=epochs)
    registry = services.registry(settings)
    info = register_module(
        registry,
        MODEL,
        module=model,
        spec=spec,
        metrics={},
        lineage={"dataset": "digits", "benchmark": True},
    )
    registry.set_alias(MODEL, "champion", info.version)
    token = services.ensure_client_token(settings).read_text().strip()
    return model, spec, test.x[:1].numpy(), token


def _register_compressed(home: Path) -> int:
    """A pruned (90%) + int8 version of the champion, not promoted; returns its number."""
    from inhouse import services
    from inhouse.config import CompressionSettings, GateSettings, load_settings
    from inhouse.kinds.tabular.compression import compress_version

    settings = load_settings(home=str(home))
    result = compress_version(
        registry=services.registry(settings),
        engine=services.engine(settings),
        model=MODEL,
        settings=CompressionSettings(),
        gate=GateSettings(),
        promote=False,
    )
    return int(result["version"])


def _auth_ms(home: Path, token: str, n: int) -> tuple[list[float], list[float]]:
    """Per-request authorization in-process: what the ingress runs (``RequestAuthorizer``:
    cached token state, audit entries queued and written in batches) vs the uncached
    ``AccessService.check`` (a token lookup and one audit transaction per request)."""
    from inhouse import services
    from inhouse.access import RequestAuthorizer
    from inhouse.config import load_settings

    access = services.access(load_settings(home=str(home)))
    header = f"Bearer {token}"
    authorizer = RequestAuthorizer(access)
    try:
        cached = time_calls_ms(
            lambda: authorizer.authorize(
                header, action="model:predict", resource=MODEL, request_id="b"
            ),
            repeats=n * 5,
        )
    finally:
        authorizer.close()
    uncached = time_calls_ms(
        lambda: access.check(header, action="model:predict", resource=MODEL, request_id="b"),
        repeats=n,
    )
    return cached, uncached


def _protocol_ms(x: np.ndarray, body: bytes, n: int) -> tuple[list[float], list[float]]:
    """The ingress's protocol work vs the bare app's, both in-process, without the model."""
    from inhouse.protocol import parse_json, parse_v2, v2_response

    probabilities = np.full((1, 10), 0.1, dtype=np.float32)

    def ours() -> bytes:
        parsed, request_id = parse_v2(
            parse_json(body, max_bytes=1 << 20), n_features=64, max_instances=1024
        )
        out = v2_response(
            model=MODEL, version=1, request_id=request_id, probabilities=probabilities
        )
        return json.dumps(out).encode()

    def bare() -> bytes:
        data = json.loads(body)
        np.asarray(data["inputs"][0]["data"], dtype=np.float32).reshape(-1, 64)
        return json.dumps({"data": probabilities.ravel().tolist()}).encode()

    return time_calls_ms(ours, repeats=n), time_calls_ms(bare, repeats=n)


def _handle_ms(x: np.ndarray, n: int, app: str, *methods: str) -> list[list[float]]:
    """Driver -> model replica through a DeploymentHandle (no HTTP, no ingress), per method."""
    from ray import serve

    handle = serve.get_deployment_handle(f"model-{MODEL}", app_name=app)

    def call(method: str) -> Any:
        bound = getattr(handle, method)
        return bound.remote(x).result() if method == "predict" else bound.remote().result()

    return [time_calls_ms(lambda m=m: call(m), repeats=n, warmup=30) for m in methods]


def _deploy(
    home: Path,
    name: str,
    prefix: str,
    *,
    batching: bool,
    auth: bool = True,
    ref: str = "champion",
) -> None:
    """Deploy our app under ``name`` at ``prefix``; ``auth=False`` is a diagnostic variant."""
    from ray import serve

    from inhouse.config import ServeArgs
    from inhouse.serve.app import build_app

    key = "INHOUSE_SECURITY__REQUIRE_AUTH"  # build_app reads settings from the environment
    previous = os.environ.get(key)
    os.environ[key] = "true" if auth else "false"
    try:
        app = build_app(ServeArgs(models=[MODEL], home=str(home), batching=batching, ref=ref))
    finally:
        if previous is None:
            del os.environ[key]
        else:
            os.environ[key] = previous
    serve.run(app, name=name, route_prefix=prefix)


def run(quick: bool) -> list[dict[str, Any]]:
    """Latency overhead (ours vs bare Serve) and throughput (batching on vs off).

    Every variant is deployed at once, as its own app (ours at ``/``, batching off at
    ``/nobatch``, auth off at ``/noauth``, bare at ``/bare``), so that sequential requests
    interleave across variants and throughput slices take turns.
    """
    n, seconds = (150, 4.0) if quick else (300, 10.0)
    m: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="inhouse-bench-serve-") as tmp:
        home = Path(tmp)
        model, spec, x, token = _register(home, epochs=5)
        compressed = _register_compressed(home)
        body = json.dumps(
            {
                "id": "b",
                "inputs": [
                    {
                        "name": "input",
                        "shape": [1, 64],
                        "datatype": "FP32",
                        "data": x.ravel().tolist(),
                    }
                ],
            }
        ).encode()
        with torch_threads(1), torch.inference_mode():
            tensor = torch.from_numpy(x)
            m["inproc"] = time_calls_ms(lambda: torch.softmax(model(tensor), dim=1), repeats=n * 5)
        m["proto"], m["proto_bare"] = _protocol_ms(x, body, n * 5)
        m["auth"], m["auth_uncached"] = _auth_ms(home, token, n)
        port = free_port(8011)
        url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
        # 3 of our apps (1.25 logical CPUs each) + bare (0.5) side by side need more than 4
        # logical CPUs; logical CPUs only count for scheduling, the machine has what it has.
        with local_ray(num_cpus=8):
            from ray import serve

            serve.start(http_options={"host": "127.0.0.1", "port": port})
            try:
                _deploy(home, "inhouse", "/", batching=True)
                _deploy(home, "nobatch", "/nobatch", batching=False)
                _deploy(home, "noauth", "/noauth", batching=True, auth=False)
                _deploy(home, "compressed", "/compressed", batching=True, ref=str(compressed))
                serve.run(
                    _bare_app(spec, model.state_dict(), 64), name="bare", route_prefix="/bare"
                )
                infer = {
                    "on": (INFER, body),
                    "off": ("/nobatch" + INFER, body),
                    "noauth": ("/noauth" + INFER, body),
                    "bare": ("/bare", body),
                    "compressed": ("/compressed" + INFER, body),
                }
                row_values = x.ravel().tolist()
                explain = {
                    method: (
                        f"/v1/models/{MODEL}:explain",
                        json.dumps(
                            {"instances": [row_values], "method": method, "options": options}
                        ).encode(),
                    )
                    for method, options in (
                        ("ig", {"n_steps": 50}),
                        ("shap", {"n_samples": 200}),
                        ("lime", {"n_samples": 200}),
                    )
                }
                with httpx.Client(base_url=url, timeout=30.0, headers=auth) as client:
                    m["seq"] = sequential_ms(
                        client,
                        {
                            **infer,
                            "live": ("/v2/health/live", None),
                            "meta": (f"/v2/models/{MODEL}", None),
                        },
                        n=n,
                    )
                    m["explain"] = sequential_ms(
                        client, {"predict": (INFER, body), **explain}, n=max(n // 5, 20), warmup=5
                    )
                m["h_on"], m["h_rpc"] = _handle_ms(x, n, "inhouse", "predict", "metadata")
                (m["h_off"],) = _handle_ms(x, n, "nobatch", "predict")
                m["tp"] = throughput(url, infer, seconds=seconds, headers=auth)
                with httpx.Client(base_url=url, timeout=30.0, headers=auth) as client:
                    # Raises if the cluster died under the load test (e.g. someone's
                    # `ray stop --force`): then the errors above are not the app's.
                    sequential_ms(client, infer, n=1, warmup=0)
            finally:
                serve.shutdown()
    return _rows(m)


def _rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    seq, tp = m["seq"], m["tp"]
    p50 = {label: median(times) for label, times in seq.items()}
    p50_in, p99_in = median(m["inproc"]), percentile(m["inproc"], 99)
    where = (
        f"module(x) p50 {p50_in * 1000:.0f} us; HTTP p50 ours {p50['on']:.2f}, bare "
        f"{p50['bare']:.2f} ms"
    )

    def load(label: str) -> str:
        return f"{label} p50/p99 {tp[label].p50_ms:.0f}/{tp[label].p99_ms:.0f} ms"

    return [
        row(
            NAME,
            "p50 overhead ms (HTTP - in-process)",
            p50["on"] - p50_in,
            p50["bare"] - p50_in,
            target=("ours", "<=", 2.0, "ms"),
            notes=f"baseline: bare 1-deployment Serve app, same model; {where}; sequential "
            "single-row v2 infer on one keep-alive connection, variants interleaved",
        ),
        row(
            NAME,
            "p99 overhead ms (HTTP - in-process)",
            percentile(seq["on"], 99) - p99_in,
            percentile(seq["bare"], 99) - p99_in,
        ),
        row(
            NAME,
            "p50 ms, ingress only vs bare",
            p50["live"],
            p50["bare"],
            notes="GET /v2/health/live: proxy + FastAPI ingress, no auth, no model hop",
        ),
        row(
            NAME,
            "p50 ms, ingress + auth vs ingress only",
            p50["meta"],
            p50["live"],
            notes=f"GET /v2/models/{MODEL}: token check + metadata cached in the ingress, "
            "no model hop",
        ),
        row(
            NAME,
            "p50 ms, batching off vs bare",
            p50["off"],
            p50["bare"],
            notes="ours with ServeArgs(batching=False) (max_batch_size=1)",
        ),
        row(
            NAME,
            "p50 ms, auth off vs bare (diagnostic)",
            p50["noauth"],
            p50["bare"],
            notes="ours with INHOUSE_SECURITY__REQUIRE_AUTH=false, batching on",
        ),
        row(
            NAME,
            "p50 ms, handle->replica predict, batching on vs off",
            median(m["h_on"]),
            median(m["h_off"]),
            notes="driver DeploymentHandle, no HTTP, no ingress; @serve.batch (32 rows, no "
            f"wait) vs no queue; a bare RPC (.metadata): {median(m['h_rpc']):.2f} ms",
        ),
        row(
            NAME,
            "p50 ms, authorization in-process: ingress path vs uncached",
            median(m["auth"]),
            median(m["auth_uncached"]),
            notes="RequestAuthorizer.authorize (cache TTL 1 s, batched audit) vs "
            "AccessService.check (token lookup + one audit transaction); p99 "
            f"{percentile(m['auth'], 99):.3f} vs "
            f"{percentile(m['auth_uncached'], 99):.2f} ms",
        ),
        row(
            NAME,
            "p50 ms, protocol work in-process",
            median(m["proto"]),
            median(m["proto_bare"]),
            notes="parse_json+parse_v2+v2_response+dumps vs json.loads+asarray+dumps",
        ),
        row(
            NAME,
            "throughput req/s, 32 clients, batching on vs off",
            tp["on"].requests_per_s,
            tp["off"].requests_per_s,
            target=("ratio", ">=", 1.0, ""),
            notes=f"{load('on')}, {load('off')}; {tp['on'].seconds:.0f} s each in 4 slices, "
            "variants taking turns",
        ),
        row(
            NAME,
            "throughput req/s, 32 clients, ours vs bare",
            tp["on"].requests_per_s,
            tp["bare"].requests_per_s,
            notes=load("bare"),
        ),
        row(
            NAME,
            "throughput req/s, 32 clients, auth on vs off",
            tp["on"].requests_per_s,
            tp["noauth"].requests_per_s,
            notes=f"{load('noauth')}; auth on = the ingress's RequestAuthorizer per request",
        ),
        row(
            NAME,
            "throughput req/s, 32 clients, compressed vs original model",
            tp["compressed"].requests_per_s,
            tp["on"].requests_per_s,
            notes=f"{load('compressed')}; pruned 90% + int8 version of the same model, same app "
            "shape (ingress -> replica), same load",
        ),
        *_explain_rows(m["explain"]),
        row(
            NAME,
            "throughput errors, batching on / off",
            tp["on"].errors,
            tp["off"].errors,
            target=("both", "==", 0, ""),
            notes=f"bare {tp['bare'].errors}, auth off {tp['noauth'].errors}; "
            f"{sum(t.ok for t in tp.values())} requests OK; kinds: "
            f"{ {k: t.error_kinds for k, t in tp.items() if t.error_kinds} or 'none' }",
        ),
    ]


def _explain_rows(times: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Explanation latency over prediction latency, same single row, same app, over HTTP."""
    predict = median(times["predict"])
    labels = {
        "ig": "IG (50 steps)",
        "shap": "KernelSHAP (200 samples)",
        "lime": "LIME (200 samples)",
    }
    return [
        row(
            NAME,
            f"p50 ms, explain {label} vs predict over HTTP",
            median(times[method]),
            predict,
            target=("ratio", "<=", 10.0, "") if method == "ig" else None,
            notes="POST :explain through the ingress to the explainer sidecar vs POST infer; "
            "sequential, interleaved",
        )
        for method, label in labels.items()
    ]
