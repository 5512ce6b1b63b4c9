"""A small HTTP client of our own Serve endpoints (used by ``inhouse predict`` and the demo)."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx

from inhouse.config import Settings
from inhouse.console import print_table
from inhouse.errors import InhouseError, InvalidInputError, UnavailableError


def auth_headers(settings: Settings) -> dict[str, str]:
    """``Authorization`` from ``$INHOUSE_TOKEN`` or the local client token file, if any."""
    token = os.environ.get("INHOUSE_TOKEN", "").strip()
    if not token and settings.client_token_path.exists():
        token = settings.client_token_path.read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def tls_verify(settings: Settings) -> str | bool:
    """Trust our private CA when it exists (``inhouse certs init``), else the system store."""
    ca = settings.tls_dir / "ca.pem"
    return str(ca) if settings.tls and ca.exists() else True


def infer(settings: Settings, model: str, rows: list[list[float]]) -> dict[str, Any]:
    """POST an OIP v2 infer request; returns the decoded response or raises with the reason."""
    width = len(rows[0]) if rows else 0
    body = {
        "inputs": [{"name": "input", "shape": [len(rows), width], "datatype": "FP32", "data": rows}]
    }
    url = f"{settings.serve_url}/v2/models/{model}/infer"
    try:
        response = httpx.post(
            url,
            json=body,
            headers=auth_headers(settings),
            timeout=30.0,
            verify=tls_verify(settings),
        )
    except httpx.HTTPError as exc:
        raise UnavailableError(f"Serve does not answer at {url} ({exc}); run `inhouse deploy`")
    if response.status_code != 200:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        error = InhouseError(f"{url} answered {response.status_code}: {message}")
        error.status_code = response.status_code
        raise error
    result: dict[str, Any] = response.json()
    return result


def predict_rows(settings: Settings, model: str, *, inline: str | None, from_test: int) -> int:
    """Send rows (given inline, or the first N of the test split) and print the predictions."""
    labels: list[int | None]
    if inline is not None:
        try:
            rows = json.loads(inline)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"--input is not JSON: {exc}") from None
        if not isinstance(rows, list) or not rows or not isinstance(rows[0], list):
            raise InvalidInputError("--input must be a JSON list of rows, e.g. [[0, 1, 2]]")
        labels = [None] * len(rows)
    else:
        from inhouse import services
        from inhouse.data import read_rows

        engine = services.engine(settings)
        info = services.registry(settings).get(model)

        test = read_rows(engine, info.lineage["dataset"], split="test")
        rows = test.x[:from_test].tolist()
        labels = [int(v) for v in test.y[:from_test]]
    result = infer(settings, model, rows)
    outputs = {o["name"]: o for o in result["outputs"]}
    predicted = outputs["label"]["data"]
    width = outputs["probabilities"]["shape"][1]
    probs = outputs["probabilities"]["data"]
    table = []
    for i, label in enumerate(predicted):
        confidence = max(probs[i * width : (i + 1) * width])
        table.append([i, label, f"{confidence:.3f}", "" if labels[i] is None else labels[i]])
    print(f"{model} v{result['model_version']} via {settings.serve_url}/v2/models/{model}/infer")
    print_table(["row", "predicted", "confidence", "actual"], table)
    known = [(p, a) for p, a in zip(predicted, labels, strict=True) if a is not None]
    if known:
        right = sum(p == a for p, a in known)
        print(f"{right}/{len(known)} correct")
    return 0
