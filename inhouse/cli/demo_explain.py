"""The demo's explanation of a served prediction: one held-out test row sent to the model's
explainer sidecar (``POST /v1/models/{name}:explain``), as JSON and as a PNG. For an image data
set (MNIST) the PNG is a height x width heat map beside the digit; KernelSHAP switches 4x4 pixel
patches there (:mod:`inhouse.explain.patches`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from inhouse.client import auth_headers, tls_verify
from inhouse.config import Settings


def explain_to_png(
    settings: Settings, model: str, body: dict[str, Any], path: Path, *, timeout: float
) -> dict[str, Any]:
    """``POST /v1/models/{model}:explain`` with ``body``: the JSON answer; its PNG goes to
    ``path``."""
    url = f"{settings.serve_url}/v1/models/{model}:explain"
    with httpx.Client(
        headers=auth_headers(settings), verify=tls_verify(settings), timeout=timeout
    ) as client:
        answer = client.post(url, json=body)
        answer.raise_for_status()
        png = client.post(url, params={"format": "png"}, json=body)
        png.raise_for_status()
    path.write_bytes(png.content)
    found: dict[str, Any] = answer.json()
    return found


def explain_test_row(
    settings: Settings, model: str, dataset: str, *, method: str = "shap"
) -> dict[str, Any]:
    """Explain the first test row of ``dataset`` with the served ``model``; save the PNG.

    Returns the figures the summary prints: method, predicted class, image (or ``None``),
    patch size, milliseconds and the PNG's path.
    """
    from inhouse import services
    from inhouse.data import read_rows

    test = read_rows(services.engine(settings), dataset, split="test")
    body = {"instances": test.x[:1].tolist(), "method": method}
    path = settings.home / f"demo-{model}-explanation.png"
    found = explain_to_png(settings, model, body, path, timeout=120.0)
    first = found["explanations"][0]
    return {
        "method": found["metadata"].get("method_name", found["method"]),
        "predicted": first["prediction"]["name"],
        "actual": int(test.y[0]),
        "image": found.get("image"),
        "patch_size": found["metadata"].get("patch_size"),
        "ms": float(found["metadata"].get("runtime_ms", 0.0)),
        "png": str(path),
    }


def explanation_line(found: dict[str, Any]) -> str:
    """The summary line: what was drawn, of which row, and where the PNG is."""
    image = found["image"]
    if image:
        kind = f"{image['height']}x{image['width']} heat map"
        if (found["patch_size"] or 1) > 1:
            kind += f" ({found['patch_size']}x{found['patch_size']} pixel patches)"
    else:
        kind = "bar chart"
    return (
        f" explanation    {found['method']} {kind} of test row 0 (predicted "
        f"{found['predicted']}, actual {found['actual']}) in {found['ms']:.0f} ms: {found['png']}"
    )
