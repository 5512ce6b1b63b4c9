"""Hostile clients against the real app (the quick pass that runs in ``make test``).

Every route x every authentication case, every route fuzzed from the app's own OpenAPI
description (schemathesis), hostile bodies, 5 s of mixed load, and no token or payload in
any log. After each: no 5xx, the same replica actors alive (none crashed).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from inhouse import services
from inhouse.benchmarks.bench_load import Target, explain_body, infer_body, replica_states, run_load
from inhouse.config import Settings
from inhouse.serve.ingress import app as ingress_app
from tests.polling import wait_for
from tests.reliability.serving import (
    DEPLOYMENT,
    MODEL,
    PAYLOAD_MARKER,
    REQUEST_ID_MARKER,
    Served,
    new_request_id,
    ray_log_dir,
    route_bodies,
    serve_digits,
    v2_body,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
OPENAPI = ingress_app.openapi()
PUBLIC = {"/v2/health/live", "/v2/health/ready", "/v2"}  # everything else needs a token
EXPECTED = {"none": 401, "malformed": 401, "expired": 401, "revoked": 401, "wrong_scope": 403,
            "right": 200}
schema = schemathesis.openapi.from_dict(OPENAPI)


@pytest.fixture(scope="module")
def served(ray_cluster: Settings) -> Iterator[Served]:
    with serve_digits(ray_cluster, app="rel-quick") as running:
        yield running


@pytest.fixture(scope="module")
def replicas_before(served: Served) -> list[str]:
    return served.replicas()


def _routes() -> list[tuple[str, str]]:
    return [(method.upper(), path) for path, ops in OPENAPI["paths"].items() for method in ops]


def test_every_route_but_health_needs_a_token(served: Served) -> None:
    routes = _routes()
    assert {p for _m, p in routes if "{name}" not in p} == PUBLIC  # a new public route fails
    bodies = route_bodies(served.rows)
    checked = 0
    with httpx.Client(base_url=served.base_url, timeout=30) as http:
        for method, path in routes:
            url = path.replace("{name}", MODEL)
            if "{name}" not in path:
                assert http.request(method, url).status_code in (200, 503), path
                continue
            for case, header in served.auth.items():
                headers = {"content-type": "application/json"}
                if header is not None:
                    headers["Authorization"] = header
                response = http.request(method, url, content=bodies.get(path), headers=headers)
                assert response.status_code == EXPECTED[case], (method, path, case, response.text)
                if response.status_code == 401:
                    assert response.headers["www-authenticate"] == "Bearer"
                checked += 1
    assert checked == 6 * 6
    audit = services.access(served.settings).audit
    wait_for(lambda: audit.verify().checked >= checked, what="the audit entries")
    assert audit.verify().ok


HOSTILE: list[tuple[str, str, bytes | None, dict[str, str], int]] = [
    # (label, path, body, extra headers, expected status)
    ("not json", "/v2/models/{m}/infer", b"{not json", {}, 400),
    ("empty", "/v2/models/{m}/infer", b"", {}, 400),
    ("latin-1", "/v2/models/{m}/infer", '{"inputs": "é"}'.encode("latin-1"), {}, 400),
    ("NaN", "/v2/models/{m}/infer", b'{"instances": [[NaN]]}', {}, 400),
    ("Infinity", "/v1/models/{m}:predict", b'{"instances": [[Infinity]]}', {}, 400),
    ("deep", "/v2/models/{m}/infer", b"[" * 100_000 + b"]" * 100_000, {}, 400),
    ("deep small", "/v1/models/{m}:predict", b"[" * 40 + b"]" * 40, {}, 400),
    ("deep object", "/v1/models/{m}:predict", b'{"a":' * 40 + b"1" + b"}" * 40, {}, 400),
    ("top-level array", "/v1/models/{m}:predict", b"[1, 2]", {}, 422),
    ("strings", "/v1/models/{m}:predict", json.dumps({"instances": [["a"] * 64]}).encode(), {},
     422),
    ("bools", "/v1/models/{m}:predict", json.dumps({"instances": [[True] * 64]}).encode(), {},
     422),
    ("over float32", "/v1/models/{m}:predict", json.dumps({"instances": [[1e39] * 64]}).encode(),
     {}, 422),
    ("huge int", "/v1/models/{m}:predict", b'{"instances": [[' + b"9" * 400 + b"]]}", {}, 422),
    ("wrong width", "/v2/models/{m}/infer", json.dumps(v2_body([[1.0] * 63])).encode(), {}, 422),
    ("huge shape", "/v2/models/{m}/infer",
     json.dumps({"inputs": [{"name": "x", "shape": [10**9, 64], "datatype": "FP32",
                             "data": [1.0] * 64}]}).encode(), {}, 413),
    ("negative shape", "/v2/models/{m}/infer",
     json.dumps({"inputs": [{"name": "x", "shape": [-1, 64], "datatype": "FP32",
                             "data": [1.0] * 64}]}).encode(), {}, 422),
    ("BYTES tensor", "/v2/models/{m}/infer",
     json.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "BYTES",
                             "data": ["a"] * 64}]}).encode(), {}, 422),
    ("unknown field", "/v1/models/{m}:predict",
     json.dumps({"instances": [[1.0] * 64], "debug": True}).encode(), {}, 422),
    ("2 MiB declared", "/v2/models/{m}/infer", b"{" + b" " * (2 << 20) + b"}", {}, 413),
    ("too many rows", "/v1/models/{m}:predict",
     json.dumps({"instances": [[1.0] * 64] * 1025}).encode(), {}, 413),
    ("explain steps", "/v1/models/{m}:explain",
     json.dumps({"instances": [[1.0] * 64], "options": {"n_steps": 10**6}}).encode(), {}, 422),
    ("explain method", "/v1/models/{m}:explain",
     json.dumps({"instances": [[1.0] * 64], "method": "__import__"}).encode(), {}, 422),
    ("explain format", "/v1/models/{m}:explain?format=svg",
     json.dumps({"instances": [[1.0] * 64]}).encode(), {}, 422),
    ("traversal", "/v1/models/..%2F..%2Fetc:predict", b'{"instances": [[1]]}', {}, 404),
    ("odd name", "/v2/models/%00%ff/infer", b"{}", {}, 422),
    # A token scoped to one model learns nothing about others: 403, not 404.
    ("unknown model", "/v2/models/nope/infer", json.dumps(v2_body([[1.0] * 64])).encode(), {},
     403),
    ("wrong method", "/v2/models/{m}/infer", None, {}, 405),
    ("text/plain", "/v1/models/{m}:predict", json.dumps({"instances": [[1.0] * 64]}).encode(),
     {"content-type": "text/plain"}, 200),
]


@pytest.mark.parametrize(
    ("path", "body", "extra", "status"),
    [pytest.param(p, b, h, s, id=label) for label, p, b, h, s in HOSTILE],
)
def test_hostile_bodies_get_a_clear_4xx(
    served: Served, replicas_before: list[str], path: str, body: bytes | None,
    extra: dict[str, str], status: int,
) -> None:
    with served.client() as http:
        method = "PUT" if status == 405 else "POST"
        response = http.request(method, path.replace("{m}", MODEL), content=body,
                                headers={"content-type": "application/json", **extra})
        assert response.status_code == status, response.text[:300]
        if status != 200:
            assert response.json()["error"] and "Traceback" not in response.text


def test_an_oversized_chunked_body_is_refused_without_content_length(served: Served) -> None:
    """No Content-Length to refuse early: the ingress stops reading past the limit."""

    def chunks() -> Iterator[bytes]:
        yield b'{"instances": [['
        for _ in range(2048):
            yield b"1.0," * 256
        yield b"1.0]]}"

    with served.client() as http:
        response = http.post(f"/v1/models/{MODEL}:predict", content=chunks(),
                             headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text[:200]


@schema.parametrize()
@settings(max_examples=15, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_route_fuzzed_from_openapi_never_5xx(case: schemathesis.Case, served: Served) -> None:
    for headers in ({}, served.headers):
        response = case.call(base_url=served.base_url, headers=headers, timeout=30)
        assert response.status_code < 500, (case.method, case.formatted_path,
                                            response.status_code, response.text[:300])


def test_five_seconds_of_mixed_load_have_no_errors(served: Served) -> None:
    values = served.rows[0]
    report = run_load(
        served.base_url,
        [Target("predict", f"/v2/models/{MODEL}/infer", infer_body(values), 64),
         Target("explain", f"/v1/models/{MODEL}:explain", explain_body(values), 8)],
        seconds=5.0, warmup_s=0.5, headers=served.headers,
        sampler=lambda: replica_states(served.app, DEPLOYMENT),
    )
    summary = report.summary()
    print("load (5 s, 64 predict + 8 explain clients):", json.dumps(summary))
    for label, stats in report.targets.items():
        assert stats.ok > 0, (label, summary)
        assert stats.failed == 0, (label, summary)  # no 5xx, no 4xx, no connection errors
    assert all(s.get("RUNNING", 0) >= 2 for _t, s in report.replicas), summary["replicas"]


def test_no_replica_crashed(served: Served, replicas_before: list[str]) -> None:
    """After the fuzzing and hostile bodies above: the very same replica actors serve."""
    with served.client() as http:
        assert http.get("/v2/health/ready").status_code == 200
    assert served.replicas() == replicas_before


def test_a_slow_client_does_not_block_others(served: Served) -> None:
    """Headers, then a body trickled byte by byte: the others keep getting answers."""
    host, port = served.settings.serve.host, served.settings.serve.port
    slow = []
    for _ in range(8):
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(
            f"POST /{served.app}/v1/models/{MODEL}:predict HTTP/1.1\r\nHost: {host}\r\n"
            f"{'Authorization: ' + str(served.auth['right'])}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{".encode()
        )
        slow.append(sock)
    try:
        with served.client() as http:
            for i in range(20):
                for sock in slow:
                    sock.sendall(b" ")
                body = {"instances": [served.rows[i]]}
                assert http.post(f"/v1/models/{MODEL}:predict", json=body).status_code == 200
    finally:
        for sock in slow:
            sock.close()


def test_tokens_and_payloads_never_reach_the_logs(served: Served) -> None:
    """Runs last: every token was used above. Send a distinctive payload, then grep."""
    marker_id = new_request_id()
    row = [PAYLOAD_MARKER] + served.rows[0][1:]
    with served.client() as http:
        ok = http.post(f"/v2/models/{MODEL}/infer", json=v2_body([row], marker_id))
        assert ok.status_code == 200 and ok.json()["id"] == marker_id
        bad = http.post(f"/v2/models/{MODEL}/infer", json=v2_body([row[:10]], marker_id))
        assert bad.status_code == 422
    secrets = [t.split("_", 2)[2] for t in served.raw_tokens] + served.raw_tokens
    needles = [s.encode() for s in secrets] + [str(PAYLOAD_MARKER).encode(),
                                              REQUEST_ID_MARKER.encode()]
    logs = [p for p in ray_log_dir().rglob("*") if p.is_file()]
    assert logs, ray_log_dir()
    for path in logs:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, (path, needle[:12])
    audit = services.access(served.settings).audit
    for entry in audit.tail(10_000):
        text = json.dumps(entry.to_dict(), default=str)
        for needle in needles:
            assert needle.decode() not in text, (entry, needle[:12])
