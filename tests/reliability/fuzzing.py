"""Hypothesis strategies for hostile request bodies and the properties every parser must keep.

The properties: a parser either returns a finite float32 batch of the model's shape, holding
exactly the numbers sent, or raises an :class:`~inhouse.errors.InhouseError` whose status is
a 4xx (400, 413, 422). Nothing else: no other exception (a 500), no silent coercion.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from hypothesis import strategies as st

from inhouse.errors import InhouseError
from inhouse.explain.request import parse_explain, server_limits
from inhouse.protocol import MAX_JSON_DEPTH, parse_json, parse_v1, parse_v2

CLIENT_ERRORS = {400, 413, 422}
DATATYPES = ["FP32", "FP64", "FP16", "INT64", "INT8", "UINT8", "BOOL", "BYTES", "fp32", "X"]

scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-3.4e38, max_value=3.4e38, allow_nan=False),
    st.booleans(),
    st.none(),
    st.text(max_size=4),
    st.just(10**400),
    st.just(3.5e38),
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=40,
)


@st.composite
def rows(draw: st.DrawFn, width: int) -> list[list[Any]]:
    """Mostly well-shaped rows of numbers, sometimes one hostile cell or a wrong width."""
    n = draw(st.integers(min_value=0, max_value=5))
    good = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False) | st.integers(-100, 100)
    out = [draw(st.lists(good, min_size=width, max_size=width)) for _ in range(n)]
    if out and draw(st.booleans()):
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, width - 1))
        out[i][j] = draw(scalars | json_values)
    if out and draw(st.integers(0, 5)) == 0:
        out[0] = out[0][:-1] if draw(st.booleans()) else out[0] + [1.0]
    return out


@st.composite
def v2_bodies(draw: st.DrawFn, width: int) -> Any:
    """Open Inference Protocol bodies: near-valid most of the time, hostile in one place."""
    data = draw(rows(width))
    n = len(data)
    flat = draw(st.booleans())
    tensor: dict[str, Any] = {
        "name": draw(st.text(max_size=8)),
        "shape": draw(st.just([n, width]) | st.just([width]) | st.lists(st.integers(-3, 9))),
        "datatype": draw(st.sampled_from(DATATYPES)),
        "data": [v for row in data for v in row] if flat else data,
    }
    if draw(st.integers(0, 6)) == 0:
        tensor[draw(st.sampled_from(["parameters", "extra", "name"]))] = draw(json_values)
    body: dict[str, Any] = {"inputs": [tensor] * draw(st.integers(0, 2))}
    if draw(st.booleans()):
        body["id"] = draw(st.text(max_size=8) | json_values)
    if draw(st.integers(0, 6)) == 0:
        body[draw(st.sampled_from(["outputs", "parameters", "unknown"]))] = draw(json_values)
    return draw(st.just(body) | json_values) if draw(st.integers(0, 9)) == 0 else body


@st.composite
def v1_bodies(draw: st.DrawFn, width: int) -> Any:
    body: dict[str, Any] = {"instances": draw(rows(width))}
    if draw(st.integers(0, 5)) == 0:
        body["extra"] = draw(json_values)
    return draw(st.just(body) | json_values) if draw(st.integers(0, 9)) == 0 else body


@st.composite
def explain_bodies(draw: st.DrawFn, width: int) -> Any:
    body: dict[str, Any] = {"instances": draw(rows(width))}
    if draw(st.booleans()):
        body["method"] = draw(st.sampled_from(["ig", "shap", "lime", "IG", "", "x"]) | json_values)
    if draw(st.booleans()):
        body["target"] = draw(st.integers(-2, 12) | json_values)
    if draw(st.booleans()):
        keys = ["n_steps", "n_samples", "perturbations_per_eval", "internal_batch_size",
                "baseline", "seed", "bogus"]
        body["options"] = draw(
            st.dictionaries(
                st.sampled_from(keys),
                st.integers(-5, 10**7) | st.sampled_from(["zeros", "mean", "x"]) | json_values,
                max_size=3,
            )
        )
    return body


def raw_bodies() -> st.SearchStrategy[bytes]:
    """Bytes a client may send: random, JSON with NaN/Infinity, deep nesting, odd encodings."""
    texts = json_values.map(lambda v: json.dumps(v, allow_nan=True))
    deep = st.integers(1, 4 * MAX_JSON_DEPTH).map(lambda d: "[" * d + "]" * d)
    return st.one_of(
        st.binary(max_size=256),
        texts.map(str.encode),
        texts.map(lambda t: t.encode("utf-16")),
        deep.map(str.encode),
        st.builds(lambda t, c: (t + c).encode(), texts, st.sampled_from(["", "}", "\x00", "]"])),
    )


def expect_client_error_or(parse: Any) -> Any:
    """Run ``parse``; an InhouseError must be a client error. Returns the result or None."""
    try:
        return parse()
    except InhouseError as exc:
        assert exc.status_code in CLIENT_ERRORS, (type(exc).__name__, exc.message)
        assert exc.message and "\n" not in exc.message
        return None


def numbers_in(data: Any) -> list[Any]:
    """The leaves of a nested list, in order."""
    if isinstance(data, list):
        return [leaf for item in data for leaf in numbers_in(item)]
    return [data]


def check_batch(x: np.ndarray, sent: list[Any], width: int, max_instances: int) -> None:
    """An accepted batch is finite float32 ``(n, width)`` holding exactly the numbers sent."""
    assert x.dtype == np.float32 and x.ndim == 2 and x.shape[1] == width
    assert 1 <= x.shape[0] <= max_instances
    assert np.isfinite(x).all()
    assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in sent)
    assert all(math.isfinite(v) for v in sent)
    np.testing.assert_array_equal(x.ravel(), np.asarray(sent, dtype=np.float32))


def check_raw(raw: bytes, max_bytes: int) -> None:
    value = expect_client_error_or(lambda: parse_json(raw, max_bytes=max_bytes))
    if value is not None:
        assert isinstance(value, dict) and len(raw) <= max_bytes


def check_v2(body: Any, width: int, max_instances: int) -> None:
    result = expect_client_error_or(
        lambda: parse_v2(body, n_features=width, max_instances=max_instances)
    )
    if result is not None:
        x, _request_id = result
        check_batch(x, numbers_in(body["inputs"][0]["data"]), width, max_instances)


def check_v1(body: Any, width: int, max_instances: int) -> None:
    x = expect_client_error_or(
        lambda: parse_v1(body, n_features=width, max_instances=max_instances)
    )
    if x is not None:
        check_batch(x, numbers_in(body["instances"]), width, max_instances)


def check_explain(body: Any, width: int) -> None:
    limits = server_limits(max_instances=4)
    result = expect_client_error_or(
        lambda: parse_explain(body, n_features=width, limits=limits, n_classes=10)
    )
    if result is not None:
        x, method, target, _options = result
        check_batch(x, numbers_in(body["instances"]), width, limits.max_instances)
        assert method in ("ig", "shap", "lime") and (target is None or 0 <= target < 10)
