"""Issue #16, Low 8: a JSON integer over Python's digit limit is a 400, not a 500.

Before the fix, ``parse_json`` let the ``ValueError`` that ``int()`` raises past 4,300 digits
escape: the ingress answered 500 (``internal_error``) to a 4.3 kB body. These tests fail on
that code because the raised class is ``ValueError``, not ``MalformedRequestError``.
"""

from __future__ import annotations

import sys

import pytest

from inhouse.errors import InhouseError, MalformedRequestError
from inhouse.protocol import parse_json, parse_v1, parse_v2

LIMIT = 1 << 20


def _digits() -> int:
    return sys.get_int_max_str_digits() or 4300


@pytest.mark.parametrize(
    "template",
    [
        '{"instances": [[%s, 1]]}',
        '{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [%s, 1]}]}',
        '{"id": "a", "parameters": {"n": -%s}}',
    ],
)
def test_huge_integer_is_a_clear_400(template: str) -> None:
    if sys.get_int_max_str_digits() == 0:
        pytest.skip("the interpreter has no integer digit limit")
    raw = (template % ("9" * (_digits() + 1))).encode()
    with pytest.raises(MalformedRequestError) as caught:
        parse_json(raw, max_bytes=LIMIT)
    err = caught.value
    assert err.status_code == 400 and err.code == "malformed_request"
    assert "\n" not in err.message and str(_digits()) in err.message
    assert "set_int_max_str_digits" not in err.message  # no interpreter advice to a client


def test_integer_at_the_limit_parses_and_is_refused_as_a_value() -> None:
    # Just under the limit the body is valid JSON; the value is then refused as non-finite.
    body = parse_json(('{"instances": [[%s, 1]]}' % ("9" * _digits())).encode(), max_bytes=LIMIT)
    with pytest.raises(InhouseError) as caught:
        parse_v1(body, n_features=2, max_instances=4)
    assert caught.value.status_code == 422
    v2 = '{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [%s, 1]}]}'
    body = parse_json((v2 % ("9" * 400)).encode(), max_bytes=LIMIT)
    with pytest.raises(InhouseError) as caught:
        parse_v2(body, n_features=2, max_instances=4)
    assert caught.value.status_code == 422


def test_malformed_json_is_still_reported_as_such() -> None:
    with pytest.raises(MalformedRequestError, match="not valid JSON"):
        parse_json(b'{"instances": [1,', max_bytes=LIMIT)
