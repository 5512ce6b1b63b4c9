"""Issue #16, finding 4: the state directory is 0700 and the SQLite database 0600.

Before the fix an existing ``~/.inhouse`` kept its 0755 (``mkdir(exist_ok=True)`` does not
change a mode) and SQLite created ``inhouse.db`` with the umask's 0644, so any local user could
read every training row, the audit log and the token hashes. These tests failed then: the
directory stayed 0755 and the database (and its -wal/-shm side files) 0644.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from inhouse.cli import main
from inhouse.errors import ConfigError
from inhouse.schema import get_engine


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("INHOUSE_")]:
        monkeypatch.delenv(key)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_state_directory_and_database_are_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    old = os.umask(0o022)
    try:
        assert main(["--home", str(home), "data", "list"]) == 0
    finally:
        os.umask(old)
    assert _mode(home) == 0o700
    assert _mode(home / "inhouse.db") == 0o600
    for side in home.glob("inhouse.db-*"):  # SQLite gives them the database's mode
        assert _mode(side) == 0o600, side


def test_loose_state_directory_and_database_are_tightened_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o755)
    db = home / "inhouse.db"
    db.touch()
    db.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="inhouse.security"):
        assert main(["--home", str(home), "data", "list"]) == 0
    assert _mode(home) == 0o700 and _mode(db) == 0o600
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert f"{home} was mode 0755" in messages and f"{db} was mode 0644" in messages


def test_loose_sqlite_side_files_are_tightened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "side.db"
    sides = [Path(f"{db}{suffix}") for suffix in ("-wal", "-shm", "-journal")]
    for path in (db, *sides):
        path.touch()
        path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="inhouse.security"):
        get_engine(f"sqlite:///{db}")
    assert _mode(db) == 0o600
    messages = " ".join(r.getMessage() for r in caplog.records)
    for path in sides:  # SQLite may have removed them since (WAL checkpoint on close)
        assert f"{path} was mode 0644" in messages
        assert not path.exists() or _mode(path) == 0o600


def test_any_sqlite_file_is_created_private(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere.db"
    old = os.umask(0o022)
    try:
        get_engine(f"sqlite:///{db}")
    finally:
        os.umask(old)
    assert _mode(db) == 0o600


def test_state_directory_of_another_user_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to give a directory to another user")
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    os.chown(home, 65534, 65534)
    assert main(["--home", str(home), "data", "list"]) == 2
    assert f"{home} belongs to uid 65534" in capsys.readouterr().err

    from inhouse.private_paths import secure_dir

    with pytest.raises(ConfigError, match="belongs to uid 65534"):
        secure_dir(home)
