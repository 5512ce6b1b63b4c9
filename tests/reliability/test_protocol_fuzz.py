"""Property-based fuzzing of the request parsers (a quick pass; the long one is marked
``reliability`` in ``test_fuzz_long.py``): hostile bodies get a 4xx, never a 500."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inhouse.access.service import AuthFailure, parse_header
from inhouse.data.table import validate_name as validate_dataset_name
from inhouse.errors import InvalidInputError
from inhouse.registry import validate_model_name
from tests.reliability import fuzzing

QUICK = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
widths = st.integers(min_value=1, max_value=5)


@QUICK
@given(fuzzing.raw_bodies(), st.sampled_from([64, 1024, 1 << 20]))
def test_raw_bodies(raw: bytes, max_bytes: int) -> None:
    fuzzing.check_raw(raw, max_bytes)


@QUICK
@given(st.data(), widths, st.integers(1, 6))
def test_v2_infer_bodies(data: st.DataObject, width: int, max_instances: int) -> None:
    fuzzing.check_v2(data.draw(fuzzing.v2_bodies(width)), width, max_instances)


@QUICK
@given(st.data(), widths, st.integers(1, 6))
def test_v1_predict_bodies(data: st.DataObject, width: int, max_instances: int) -> None:
    fuzzing.check_v1(data.draw(fuzzing.v1_bodies(width)), width, max_instances)


@QUICK
@given(st.data(), widths)
def test_v1_explain_bodies(data: st.DataObject, width: int) -> None:
    fuzzing.check_explain(data.draw(fuzzing.explain_bodies(width)), width)


@QUICK
@given(st.none() | st.text(max_size=200) | st.from_regex(r"(?i)bearer ih_[0-9a-f_]{0,40}.*"))
def test_authorization_headers(header: str | None) -> None:
    try:
        parsed = parse_header(header)
    except AuthFailure as failure:
        assert failure.error.status_code == 401 and "\n" not in failure.error.message
    else:
        assert header is not None and parsed.secret in header and parsed.token_id in header


@QUICK
@given(st.text(max_size=80) | st.sampled_from(["../x", "a/../..", "a\x00b", "con", "A", "a" * 65]))
def test_model_and_dataset_names_never_escape(name: str) -> None:
    for validate in (validate_model_name, validate_dataset_name):
        try:
            validate(name)
        except InvalidInputError:
            continue
        assert name.isascii() and name[0].isalpha() and name.islower()
        assert all(c.isalnum() or c in "_-" for c in name) and "." not in name and "/" not in name
