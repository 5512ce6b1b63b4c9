"""Atomic writes: the old state or the new one, never half; a full disk is a StorageError."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from inhouse.atomic import atomic_directory, atomic_write_bytes
from inhouse.errors import StorageError


def test_write_replaces_whole_and_sets_mode(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    atomic_write_bytes(target, b"one", mode=0o600)
    atomic_write_bytes(target, b"two", mode=0o600)
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["secret"]


def test_failed_directory_block_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError), atomic_directory(tmp_path / "v1") as tmp:
        (tmp / "half").write_text("x")
        raise ValueError("crash in the middle")
    assert os.listdir(tmp_path) == []


def test_disk_full_is_a_storage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageError, match="No space left"):
        atomic_write_bytes(tmp_path / "f", b"data")
    assert os.listdir(tmp_path) == []
