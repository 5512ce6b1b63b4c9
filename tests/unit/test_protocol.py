"""Strict parsing of OIP v2 and KServe v1 bodies: every rule and its status code."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inhouse.errors import InvalidInputError, MalformedRequestError, PayloadTooLargeError
from inhouse.protocol import parse_json, parse_v1, parse_v2, v1_response, v2_response


def v2(data: object, shape: list[int], datatype: str = "FP32", **extra: object) -> dict:
    return {
        "inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}],
        **extra,
    }


def test_v2_accepts_flat_and_nested_data() -> None:
    flat, rid = parse_v2(v2([1, 2, 3, 4, 5, 6], [2, 3], id="r1"), n_features=3, max_instances=8)
    nested, _ = parse_v2(v2([[1, 2, 3], [4, 5, 6]], [2, 3]), n_features=3, max_instances=8)
    assert rid == "r1" and flat.dtype == np.float32 and flat.shape == (2, 3)
    assert np.array_equal(flat, nested)


def test_v2_single_row_shape() -> None:
    x, _ = parse_v2(v2([1, 2, 3], [3]), n_features=3, max_instances=8)
    assert x.shape == (1, 3)


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (v2([1, 2, 3], [1, 4]), InvalidInputError, r"must be \[n, 3\]"),
        (v2([1, 2], [1, 3]), InvalidInputError, "has 2 elements"),
        (v2(["a", "b", "c"], [1, 3]), InvalidInputError, "numbers only"),
        (v2([True, 1, 2], [1, 3]), InvalidInputError, "numbers only"),
        (v2([1, 2, 3], [1, 3], "BYTES"), InvalidInputError, "not a numeric type"),
        (v2([1, 2, 3], [1, 3], "COMPLEX"), InvalidInputError, "datatype"),
        (v2([1e39, 0, 0], [1, 3]), InvalidInputError, "float32 range"),
        (v2([10**400, 0, 0], [1, 3]), InvalidInputError, "finite"),
        (v2([1] * 30, [10, 3]), PayloadTooLargeError, "limit is 8"),
        ({"inputs": []}, InvalidInputError, "inputs"),
        ({"input": []}, InvalidInputError, "Field required"),
        (v2([1, 2, 3], [1, 3], junk=1), InvalidInputError, "junk"),
    ],
)
def test_v2_rejections(body: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_v2(body, n_features=3, max_instances=8)


def test_v1_instances() -> None:
    x = parse_v1({"instances": [[1, 2, 3], [4, 5, 6.5]]}, n_features=3, max_instances=8)
    assert x.tolist() == [[1, 2, 3], [4, 5, 6.5]]
    with pytest.raises(InvalidInputError, match=r"instances\[1\]"):
        parse_v1({"instances": [[1, 2, 3], [4, 5]]}, n_features=3, max_instances=8)
    with pytest.raises(InvalidInputError, match="instances"):
        parse_v1({"instances": []}, n_features=3, max_instances=8)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", MalformedRequestError),
        (b"{", MalformedRequestError),
        (b'{"a": NaN}', MalformedRequestError),
        (b'{"a": Infinity}', MalformedRequestError),
        (b"\xff\xfe", MalformedRequestError),
        (b"[" * 100 + b"]" * 100, MalformedRequestError),
        (b"[1, 2]", InvalidInputError),
        (b"x" * 2048, PayloadTooLargeError),
    ],
)
def test_parse_json_rejections(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_json(raw, max_bytes=1024)


def test_deep_nesting_beyond_the_interpreter_limit_is_a_400() -> None:
    with pytest.raises(MalformedRequestError):
        parse_json(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, max_bytes=10**7)


def test_responses_follow_the_protocols() -> None:
    probabilities = np.array([[0.1, 0.9], [0.8, 0.2]], dtype=np.float32)
    body = v2_response(model="m", version=3, request_id="x", probabilities=probabilities)
    assert body["model_version"] == "3" and body["id"] == "x"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["data"] == [1, 0] and outputs["probabilities"]["shape"] == [2, 2]
    json.dumps(body)
    assert v1_response(probabilities=probabilities, class_names=["a", "b"])["classes"] == ["b", "a"]
