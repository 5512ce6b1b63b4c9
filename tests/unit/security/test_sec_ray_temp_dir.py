"""Issue #16, finding 7: the local cluster's Ray temp dir sits in a private 0700 root.

Before the fix it was ``/tmp/inhouse-ray-<port>``: a predictable path straight in the shared
``/tmp`` that Ray accepts when it pre-exists and whose subdirectories (sessions, logs, sockets)
it makes 0777 without the sticky bit. ``test_start_puts_ray_in_a_private_root`` failed then (the
parent of ``--temp-dir`` was ``/tmp``, mode 1777), and nothing refused a planted directory.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inhouse import local_cluster
from inhouse.config import load_settings
from inhouse.errors import ConfigError, UnavailableError

# The longest unix socket Ray makes under its temp dir, with a 7-digit pid (AF_UNIX: 107 bytes).
SOCKET_TAIL = "/session_2025-01-01_00-00-00_000000_1234567/sockets/plasma_store"


@pytest.fixture()
def tmp_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A stand-in for /tmp (1777, like the real one; short, like it, for Ray's sockets), so
    the real private root is left alone."""
    root = Path(tempfile.mkdtemp(prefix="ihsec-", dir="/tmp"))
    root.chmod(0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _start_command(monkeypatch: pytest.MonkeyPatch, home: Path) -> list[str]:
    """The `ray start` command line `local_cluster.start` runs (the run itself is faked)."""
    seen: list[list[str]] = []

    def fake_run(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        seen.append(command)
        return subprocess.CompletedProcess(command, 1, "", "stopped by the test")

    monkeypatch.setattr(local_cluster, "dashboard_up", lambda _settings: False)
    monkeypatch.setattr(local_cluster.subprocess, "run", fake_run)
    with pytest.raises(UnavailableError, match="stopped by the test"):
        local_cluster.start(load_settings(home=str(home)))
    return seen[0]


def test_start_puts_ray_in_a_private_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tmp_root: Path
) -> None:
    command = _start_command(monkeypatch, tmp_path / "home")
    temp_dir = Path(next(a for a in command if a.startswith("--temp-dir=")).split("=", 1)[1])
    parent = temp_dir.parent
    st = os.lstat(parent)
    assert parent != tmp_root and stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode)
    assert st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700
    assert len(str(temp_dir) + SOCKET_TAIL) <= 107  # Ray's sockets still fit


def test_default_temp_dir_fits_ray_sockets() -> None:
    temp_dir = local_cluster.ray_temp_dir(load_settings(home="/tmp/pytest-of-root/x" * 8))
    assert len(str(temp_dir) + SOCKET_TAIL) <= 107  # independent of how deep the home is


def test_planted_root_with_a_loose_mode_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tmp_root: Path
) -> None:
    settings = load_settings(home=str(tmp_path / "home"))
    planted = local_cluster.ray_temp_dir(settings).parent
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    with pytest.raises(ConfigError, match=f"{planted} already exists and has mode 0777"):
        _start_command(monkeypatch, tmp_path / "home")


def test_planted_root_of_another_user_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tmp_root: Path
) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to give a directory to another user")
    planted = local_cluster.ray_temp_dir(load_settings(home=str(tmp_path / "home"))).parent
    planted.mkdir(mode=0o700)
    os.chown(planted, 65534, 65534)
    with pytest.raises(ConfigError, match="belongs to uid 65534"):
        _start_command(monkeypatch, tmp_path / "home")


def test_planted_symlink_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tmp_root: Path
) -> None:
    planted = local_cluster.ray_temp_dir(load_settings(home=str(tmp_path / "home"))).parent
    target = tmp_path / "attacker"
    target.mkdir(mode=0o700)
    planted.symlink_to(target)
    with pytest.raises(ConfigError, match="is not a plain directory"):
        _start_command(monkeypatch, tmp_path / "home")


def test_a_too_long_temp_dir_is_refused_before_ray_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    deep = tmp_path / ("d" * 60)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    with pytest.raises(ConfigError, match="too long for its unix sockets.*TMPDIR"):
        _start_command(monkeypatch, tmp_path / "home")
