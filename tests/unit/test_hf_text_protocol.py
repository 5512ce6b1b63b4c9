"""Text requests: v2 BYTES tensors, v1 string instances and explain bodies, parsed strictly."""

from __future__ import annotations

import numpy as np
import pytest

from inhouse.errors import InvalidInputError, PayloadTooLargeError
from inhouse.kinds.text.requests import (
    parse_text_explain,
    parse_text_v1,
    parse_text_v2,
    text_metadata,
    text_v2_response,
)


def _v2(data: list[object], shape: list[int] | None = None, datatype: str = "BYTES") -> dict:
    shape = shape if shape is not None else [len(data)]
    return {
        "id": "7",
        "inputs": [{"name": "text", "shape": shape, "datatype": datatype, "data": data}],
    }


def test_v2_bytes_in_flat_or_column_shape() -> None:
    assert parse_text_v2(_v2(["a b", "c"]), max_instances=8) == (["a b", "c"], "7")
    assert parse_text_v2(_v2([["a"], ["b"]], [2, 1]), max_instances=8)[0] == ["a", "b"]


@pytest.mark.parametrize(
    ("body", "error", "match"),
    [
        (_v2([1.0], datatype="FP32"), InvalidInputError, "send BYTES strings"),
        (_v2(["a", 3]), InvalidInputError, r"data\[1\] is int"),
        (_v2(["a", " "]), InvalidInputError, "is empty"),
        (_v2(["a"], [2]), InvalidInputError, "needs 2"),
        (_v2(["a", "b"], [1, 2]), InvalidInputError, "must be"),
        (_v2(["a"] * 9), PayloadTooLargeError, "9 instances"),
        (_v2(["x" * 10_001]), PayloadTooLargeError, "characters"),
        ({"inputs": []}, InvalidInputError, "inputs"),
    ],
)
def test_v2_refusals(body: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        parse_text_v2(body, max_instances=8)


def test_v1_instances_and_explain_bodies() -> None:
    assert parse_text_v1({"instances": ["a", {"text": "b"}]}, max_instances=4) == ["a", "b"]
    with pytest.raises(InvalidInputError, match="send a string"):
        parse_text_v1({"instances": [[1, 2]]}, max_instances=4)
    with pytest.raises(InvalidInputError):
        parse_text_v1({"instances": ["a"], "extra": 1}, max_instances=4)
    body = {"instances": ["a"], "target": 2, "n_steps": 16}
    assert parse_text_explain(body, max_instances=4, n_classes=3) == (["a"], 2, 16)
    assert parse_text_explain({"instances": ["a"]}, max_instances=4, n_classes=3)[1:] == (None, 32)
    for bad, match in [
        ({"instances": ["a"], "target": 3}, "target"),
        ({"instances": ["a"], "target": True}, "target"),
        ({"instances": ["a"], "n_steps": 1000}, "n_steps"),
        ({"instances": ["a"], "method": "shap"}, "method 'ig'"),
        ({"instances": ["a"], "baseline": 0}, "unknown fields"),
    ]:
        with pytest.raises(InvalidInputError, match=match):
            parse_text_explain(bad, max_instances=4, n_classes=3)


def test_responses_carry_class_names_as_bytes() -> None:
    probabilities = np.array([[0.1, 0.9], [0.8, 0.2]], dtype=np.float32)
    response = text_v2_response(
        model="m", version=3, request_id="r", probabilities=probabilities, class_names=["no", "yes"]
    )
    outputs = {o["name"]: o for o in response["outputs"]}
    assert outputs["label"]["data"] == [1, 0] and outputs["class_name"]["data"] == ["yes", "no"]
    assert outputs["class_name"]["datatype"] == "BYTES" and response["id"] == "r"
    meta = text_metadata(model="m", versions=[3], n_classes=2)
    assert meta["inputs"][0]["datatype"] == "BYTES" and meta["versions"] == ["3"]
