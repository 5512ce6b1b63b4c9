"""Inference protocols: Open Inference Protocol v2 and KServe v1, parsed strictly.

Parsing is pure (no Ray, no HTTP) so every rule is unit-tested: the body must be JSON
without NaN/Infinity, at most ``MAX_JSON_DEPTH`` deep, within the size limit; the tensor
must be numeric, finite and shaped ``[n, features]``. Each failure raises the error class
whose HTTP status the ingress returns (400, 413, 422), with a message naming the problem.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from inhouse.config import parse_model
from inhouse.errors import InvalidInputError, MalformedRequestError, PayloadTooLargeError

MAX_JSON_DEPTH = 32
Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
# Tensors we can feed a model: every v2 datatype but BOOL and BYTES.
NUMERIC_TYPES = frozenset(get_args(Datatype)) - {"BOOL", "BYTES"}


class Strict(BaseModel):
    """Base of the request bodies: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class RequestInput(Strict):
    """One input tensor of a v2 request."""

    name: str = Field(max_length=256)
    shape: list[int] = Field(min_length=1, max_length=8)
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any]


class RequestOutput(Strict):
    name: str = Field(max_length=256)
    parameters: dict[str, Any] | None = None


class InferenceRequest(Strict):
    """The body of ``POST /v2/models/{name}/infer``."""

    id: str | None = Field(None, max_length=256)
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1, max_length=1)
    outputs: list[RequestOutput] | None = None


class PredictRequest(Strict):
    """The body of KServe v1 ``POST /v1/models/{name}:predict``."""

    instances: list[Any] = Field(min_length=1)


def _reject_constant(name: str) -> float:
    raise MalformedRequestError(f"JSON constant {name} is not allowed; send finite numbers")


def _depth(value: Any, limit: int) -> int:
    depth, frontier = 0, [value]
    while frontier:
        depth += 1
        if depth > limit:
            raise MalformedRequestError(f"JSON nested deeper than {limit} levels")
        children: list[Any] = []
        for item in frontier:
            if isinstance(item, dict):
                children.extend(item.values())
            elif isinstance(item, list):
                children.extend(item)
        frontier = children
    return depth


def parse_json(raw: bytes, *, max_bytes: int) -> Any:
    """Decode a request body; 413 over ``max_bytes``, 400 if not strict JSON or too deep."""
    if len(raw) > max_bytes:
        raise PayloadTooLargeError(f"request body is {len(raw)} bytes; the limit is {max_bytes}")
    if not raw.strip():
        raise MalformedRequestError("request body is empty; send a JSON object")
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedRequestError(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise MalformedRequestError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:  # not JSONDecodeError (caught above): Python's int digit limit
        raise MalformedRequestError(
            f"request body has a JSON integer longer than {sys.get_int_max_str_digits()} "
            "digits; send numbers of ordinary size"
        ) from None
    _depth(value, MAX_JSON_DEPTH)
    if not isinstance(value, dict):
        raise InvalidInputError("request body must be a JSON object")
    return value


def validate_body(model: type[Strict], body: Any) -> Any:
    """``body`` as ``model``; the first validation error (with a count of the rest) is a 422."""
    return parse_model(model, body, error=InvalidInputError, root="body", count_rest=True)


def flatten_data(data: list[Any], limit: int) -> list[Any]:
    """The leaves of a (nested) tensor ``data`` list in order; 413 past ``limit`` of them."""
    flat: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            flat.append(item)
            if len(flat) > limit:
                raise PayloadTooLargeError(f"tensor has more than {limit} elements")
    return flat


_END = object()


def _as_matrix(values: list[Any], *, rows: int, features: int, what: str) -> np.ndarray:
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InvalidInputError(f"{what}[{i}] is {type(v).__name__}; numbers only")
        try:
            finite = math.isfinite(v)
        except OverflowError:
            finite = False
        if not finite:
            raise InvalidInputError(f"{what}[{i}] is not a finite float32 number")
    array = np.asarray(values, dtype=np.float64)
    if np.abs(array).max(initial=0.0) > 3.4e38:
        raise InvalidInputError(f"{what} has values outside the float32 range")
    return array.astype(np.float32).reshape(rows, features)


def parse_v2(body: Any, *, n_features: int, max_instances: int) -> tuple[np.ndarray, str | None]:
    """Validate a v2 infer body; returns the ``(n, n_features)`` float32 batch and request id."""
    request: InferenceRequest = validate_body(InferenceRequest, body)
    tensor = request.inputs[0]
    if tensor.datatype not in NUMERIC_TYPES:
        raise InvalidInputError(f"inputs[0].datatype {tensor.datatype} is not a numeric type")
    shape = tensor.shape
    if len(shape) == 1:
        shape = [1, shape[0]]
    if len(shape) != 2 or shape[1] != n_features or shape[0] < 1:
        raise InvalidInputError(
            f"inputs[0].shape {tensor.shape} must be [n, {n_features}] with n >= 1"
        )
    if shape[0] > max_instances:
        raise PayloadTooLargeError(f"{shape[0]} instances; the limit is {max_instances}")
    values = flatten_data(tensor.data, shape[0] * shape[1])
    if len(values) != shape[0] * shape[1]:
        raise InvalidInputError(
            f"inputs[0].data has {len(values)} elements but shape {tensor.shape} needs "
            f"{shape[0] * shape[1]}"
        )
    return _as_matrix(values, rows=shape[0], features=n_features, what="inputs[0].data"), request.id


def parse_v1(body: Any, *, n_features: int, max_instances: int) -> np.ndarray:
    """Validate a v1 predict body (``{"instances": [[...], ...]}``)."""
    request: PredictRequest = validate_body(PredictRequest, body)
    if len(request.instances) > max_instances:
        raise PayloadTooLargeError(f"{len(request.instances)} instances; limit {max_instances}")
    values: list[Any] = []
    for i, instance in enumerate(request.instances):
        if not isinstance(instance, list) or len(instance) != n_features:
            raise InvalidInputError(f"instances[{i}] must be a list of {n_features} numbers")
        values.extend(instance)
    return _as_matrix(values, rows=len(request.instances), features=n_features, what="instances")


def v2_response(
    *, model: str, version: int, request_id: str | None, probabilities: np.ndarray
) -> dict[str, Any]:
    """OIP v2 response with two outputs: ``probabilities`` (FP32) and ``label`` (INT64)."""
    labels = probabilities.argmax(axis=1)
    n, k = probabilities.shape
    response: dict[str, Any] = {
        "model_name": model,
        "model_version": str(version),
        "outputs": [
            {
                "name": "probabilities",
                "shape": [n, k],
                "datatype": "FP32",
                "data": probabilities.astype(np.float32).ravel().tolist(),
            },
            {"name": "label", "shape": [n], "datatype": "INT64", "data": labels.tolist()},
        ],
    }
    if request_id is not None:
        response["id"] = request_id
    return response


def v1_response(*, probabilities: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """KServe v1 response: predicted class index per instance, with class names and scores."""
    labels = probabilities.argmax(axis=1).tolist()
    return {
        "predictions": labels,
        "classes": [class_names[i] if i < len(class_names) else str(i) for i in labels],
        "probabilities": probabilities.astype(np.float32).round(6).tolist(),
    }


def model_metadata(
    *, model: str, versions: list[int], n_features: int, n_classes: int
) -> dict[str, Any]:
    """``GET /v2/models/{name}``: what tensors the model takes and returns."""
    return {
        "name": model,
        "versions": [str(v) for v in versions],
        "platform": "pytorch",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, n_features]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, n_classes]},
            {"name": "label", "datatype": "INT64", "shape": [-1]},
        ],
    }
