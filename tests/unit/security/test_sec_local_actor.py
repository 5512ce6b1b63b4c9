"""Issue #16, finding 9: the CLI's local actor is not taken from ``$LOGNAME``.

Before the fix ``local_actor()`` was ``local:<getpass.getuser()>``, and ``getuser`` returns
``$LOGNAME``/``$USER`` when set, so ``LOGNAME=alice inhouse tokens revoke …`` was audited as
alice. This test failed then: the actor was ``local:mallory-as-alice``, without a uid.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from inhouse import services
from inhouse.cli import main
from inhouse.cli.auth import local_actor
from inhouse.config import load_settings

SPOOFED = "mallory-as-alice"


@pytest.fixture()
def spoofed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("INHOUSE_")]:
        monkeypatch.delenv(key)
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(name, SPOOFED)


@pytest.mark.usefixtures("spoofed_env")
def test_actor_comes_from_the_uid_not_the_environment() -> None:
    uid = os.getuid()
    assert local_actor() == f"local:{pwd.getpwuid(uid).pw_name}(uid={uid})"
    assert SPOOFED not in local_actor()


@pytest.mark.usefixtures("spoofed_env")
def test_actor_without_a_passwd_entry_is_the_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(uid: int) -> pwd.struct_passwd:
        raise KeyError(uid)

    monkeypatch.setattr(pwd, "getpwuid", missing)
    uid = os.getuid()
    assert local_actor() == f"local:uid{uid}(uid={uid})"


@pytest.mark.usefixtures("spoofed_env")
def test_audit_log_names_the_real_user(tmp_path: Path) -> None:
    assert main(["--home", str(tmp_path), "data", "seed", "digits"]) == 0
    entries = services.access(load_settings(home=str(tmp_path))).audit.tail(20)
    writes = [e for e in entries if e.action == "data:write"]
    assert writes and all(e.principal == local_actor() for e in writes)
    assert all(SPOOFED not in e.principal for e in entries)
