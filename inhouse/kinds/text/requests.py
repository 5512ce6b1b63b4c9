"""Text requests in the protocols clients already speak: an OIP v2 ``BYTES`` tensor of strings,
KServe v1 instances that are strings (or ``{"text": ...}``), and v1 ``:explain``.

Pure parsing (no Ray, no HTTP), like :mod:`inhouse.protocol`, whose body decoding and limits
it reuses; every failure is the error class whose status the ingress returns (400, 413, 422).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inhouse.errors import InvalidInputError, PayloadTooLargeError
from inhouse.protocol import (
    InferenceRequest,
    PredictRequest,
    flatten_data,
    v2_response,
    validate_body,
)

MAX_TEXT_CHARS = 10_000
MAX_EXPLAIN_STEPS = 200


def _text(value: Any, where: str, max_chars: int) -> str:
    if isinstance(value, dict) and set(value) == {"text"}:
        value = value["text"]
    if not isinstance(value, str):
        raise InvalidInputError(f"{where} is {type(value).__name__}; send a string")
    if not value.strip():
        raise InvalidInputError(f"{where} is empty")
    if len(value) > max_chars:
        raise PayloadTooLargeError(f"{where} has {len(value)} characters; limit {max_chars}")
    return value


def parse_text_v2(
    body: Any, *, max_instances: int, max_chars: int = MAX_TEXT_CHARS
) -> tuple[list[str], str | None]:
    """Texts of a v2 infer body whose one input is ``BYTES`` shaped ``[n]`` or ``[n, 1]``."""
    request: InferenceRequest = validate_body(InferenceRequest, body)
    tensor = request.inputs[0]
    if tensor.datatype != "BYTES":
        raise InvalidInputError(
            f"inputs[0].datatype {tensor.datatype}: this is a text model, send BYTES strings"
        )
    shape = tensor.shape
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 1:
        raise InvalidInputError(f"inputs[0].shape {shape} must be [n] or [n, 1] with n >= 1")
    if shape[0] > max_instances:
        raise PayloadTooLargeError(f"{shape[0]} instances; the limit is {max_instances}")
    values = flatten_data(tensor.data, shape[0])
    if len(values) != shape[0]:
        raise InvalidInputError(
            f"inputs[0].data has {len(values)} elements but shape {shape} needs {shape[0]}"
        )
    texts = [_text(v, f"inputs[0].data[{i}]", max_chars) for i, v in enumerate(values)]
    return texts, request.id


def parse_text_v1(body: Any, *, max_instances: int, max_chars: int = MAX_TEXT_CHARS) -> list[str]:
    """Texts of a v1 predict body: ``{"instances": ["...", {"text": "..."}]}``."""
    request: PredictRequest = validate_body(PredictRequest, body)
    if len(request.instances) > max_instances:
        raise PayloadTooLargeError(f"{len(request.instances)} instances; limit {max_instances}")
    return [_text(v, f"instances[{i}]", max_chars) for i, v in enumerate(request.instances)]


def parse_text_explain(
    body: Any, *, max_instances: int, n_classes: int, max_chars: int = MAX_TEXT_CHARS
) -> tuple[list[str], int | None, int]:
    """``(texts, target, n_steps)`` of a v1 explain body; ``method`` must be ``ig`` if given."""
    if not isinstance(body, dict):
        raise InvalidInputError("request body must be a JSON object")
    unknown = set(body) - {"instances", "target", "n_steps", "method"}
    if unknown:
        raise InvalidInputError(f"unknown fields {sorted(unknown)}")
    if body.get("method", "ig") != "ig":
        raise InvalidInputError("text models are explained with method 'ig' (token attributions)")
    texts = parse_text_v1(
        {"instances": body.get("instances")}, max_instances=max_instances, max_chars=max_chars
    )
    target, steps = body.get("target"), body.get("n_steps", 32)
    if target is not None and (
        isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < n_classes
    ):
        raise InvalidInputError(f"target must be a class index in 0..{n_classes - 1}")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= MAX_EXPLAIN_STEPS:
        raise InvalidInputError(f"n_steps must be an integer in 2..{MAX_EXPLAIN_STEPS}")
    return texts, target, steps


def text_v2_response(
    *,
    model: str,
    version: int,
    request_id: str | None,
    probabilities: np.ndarray,
    class_names: list[str],
) -> dict[str, Any]:
    """The numeric v2 answer plus a ``class_name`` BYTES output."""
    response = v2_response(
        model=model, version=version, request_id=request_id, probabilities=probabilities
    )
    labels = probabilities.argmax(axis=1).tolist()
    names = [class_names[i] if i < len(class_names) else str(i) for i in labels]
    response["outputs"].append(
        {"name": "class_name", "shape": [len(names)], "datatype": "BYTES", "data": names}
    )
    return response


def text_metadata(*, model: str, versions: list[int], n_classes: int) -> dict[str, Any]:
    """``GET /v2/models/{name}`` of a text model: one BYTES input of strings."""
    return {
        "name": model,
        "versions": [str(v) for v in versions],
        "platform": "pytorch",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, n_classes]},
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "class_name", "datatype": "BYTES", "shape": [-1]},
        ],
    }
