"""Odd names and hostile imports: path traversal, odd model, version and data set names, CSVs.

Every refusal is a 4xx-class :class:`~inhouse.errors.InhouseError`, and nothing is written:
no directory outside (or inside) the registry root, no half-made data set.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from inhouse.data import get_dataset, list_datasets
from inhouse.errors import InhouseError, InvalidInputError, ModelNotFoundError
from inhouse.kinds import register_module
from inhouse.registry import Registry
from inhouse.schema import get_engine
from tests.reliability.helpers import SPEC, register, tiny_model

QUICK = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
HOSTILE_NAMES = [
    "../evil", "..", ".", "a/../../b", "/etc/passwd", "a\\b", "a\x00b", "digits\n", "Digits",
    "digits;drop table model_versions", "a" * 65, "", " digits", "dígits", "con", "x.y", "-x",
]
names = st.sampled_from(HOSTILE_NAMES) | st.text(max_size=70)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@QUICK
@given(name=names)
def test_model_names_never_write_outside_the_registry(registry: Registry, name: str) -> None:
    root = registry.root.parent
    before = _tree(root)
    try:
        register_module(registry, name, module=tiny_model(), spec=SPEC, metrics={}, lineage={})
    except InvalidInputError:
        assert _tree(root) == before  # refused before anything was written
    else:
        assert (registry.root / name).is_dir() and name.isascii() and "/" not in name
        assert "." not in name and "\x00" not in name
        for path in _tree(root) - before:
            assert (root / path).resolve().is_relative_to(registry.root.resolve())
    for lookup in (lambda: registry.get(name), lambda: registry.versions(name)):
        try:
            lookup()
        except (InvalidInputError, ModelNotFoundError):
            pass


@QUICK
@given(ref=st.text(max_size=24).filter(lambda r: not r.isdigit() or r.isascii() and len(r) < 10))
def test_version_refs_are_found_or_not_found(registry: Registry, ref: str) -> None:
    if not registry.versions("digits"):
        register(registry)
    try:
        assert registry.get("digits", ref).version == 1
    except (ModelNotFoundError, InvalidInputError):
        pass


@pytest.mark.parametrize("ref", ["9" * 30, "²"])
def test_numeric_looking_refs_are_not_found(registry: Registry, ref: str) -> None:
    register(registry)
    with pytest.raises(ModelNotFoundError):
        registry.get("digits", ref)


@QUICK
@given(name=names)
def test_data_set_names_are_refused_before_any_sql(tmp_path: Path, name: str) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'names.db'}")
    try:
        get_dataset(engine, name)
    except InhouseError as exc:
        assert exc.status_code in (404, 422)


cells = st.text(max_size=30) | st.sampled_from(["", " ", "\x00", "é", "\ufeff", '"', "a,b"])


def _csv(rows: list[list[str]], header: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


@QUICK
@given(
    name=st.sampled_from(["texts", *HOSTILE_NAMES[:6]]),
    header=st.sampled_from([["text", "label"], ["\ufefftext", "label"], ["label"], ["text"]]),
    rows=st.lists(st.lists(cells, min_size=0, max_size=3), max_size=8),
    garbage=st.sampled_from([b"", b"\xff\xfe\x00", b"\n\"unterminated", b"a" * 200_000]),
)
@example(name="texts", header=["text", "label"], rows=[["hello there", "a"]], garbage=b"")
def test_csv_imports_are_whole_or_refused(
    tmp_path: Path, name: str, header: list[str], rows: list[list[str]], garbage: bytes
) -> None:
    text_import = pytest.importorskip("inhouse.data.text_import")  # the CSV import path
    engine = get_engine(f"sqlite:///{tmp_path / 'csv.db'}")
    path = tmp_path / "import.csv"
    path.write_bytes(_csv(rows, header).encode() + garbage)
    before = list_datasets(engine)
    try:
        written = text_import.import_text_csv(engine, name=name, csv_path=path)
    except InvalidInputError as exc:
        assert "\n" not in exc.message
        assert list_datasets(engine) == before  # no half-made data set
    except InhouseError as exc:  # e.g. ConflictError: the set exists from an earlier example
        assert exc.status_code == 409
    else:
        assert name in list_datasets(engine)
        stored = text_import.read_text_rows(engine, name)
        assert len(stored) == written.train_rows + written.test_rows >= 1
        assert all(t and t == t.strip() and "\x00" not in t for t in stored.texts)
