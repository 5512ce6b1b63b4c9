"""Issue #16, finding 3: planted settings files, auth off on a public host, the Ray token.

Before the fix ``./inhouse.yaml`` in the working directory was read silently, so whoever could
write there could turn ``require_auth`` and ``encrypt_at_rest`` off, bind Serve to 0.0.0.0 and
point ``ray.dashboard_host`` at their own listener, which then received the Ray cluster token
as a Bearer header. Each test below failed then: the planted file was applied, the state
directory's own file was never read (so no owner/mode refusal), ``require_auth: false`` on
0.0.0.0 was accepted silently, and ``dashboard_up`` sent the token to any host.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from inhouse import local_cluster
from inhouse.cli import main
from inhouse.config import load_settings
from inhouse.errors import ConfigError

PLANTED = (
    "security:\n  require_auth: false\n  encrypt_at_rest: false\n"
    "serve:\n  host: 0.0.0.0\nray:\n  dashboard_host: 203.0.113.7\n"
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("INHOUSE_")]:
        monkeypatch.delenv(key)


def _other_user(path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to give a file to another user")
    os.chown(path, 65534, 65534)


def test_working_directory_file_is_never_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    workdir = tmp_path / "shared-checkout"
    workdir.mkdir()
    (workdir / "inhouse.yaml").write_text(PLANTED)
    monkeypatch.chdir(workdir)
    settings = load_settings(home=str(tmp_path / "home"))
    assert settings.security.require_auth and settings.security.encrypt_at_rest
    assert settings.serve.host == "127.0.0.1"
    assert settings.ray.dashboard_host == "127.0.0.1"


def test_state_directory_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "inhouse.yaml").write_text("train:\n  epochs: 9\n")
    assert load_settings(home=str(home)).train.epochs == 9
    monkeypatch.setenv("INHOUSE_HOME", str(home))
    assert load_settings().train.epochs == 9


def test_state_directory_file_of_another_user_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    planted = home / "inhouse.yaml"
    planted.write_text("train:\n  epochs: 9\n")
    _other_user(planted)
    with pytest.raises(ConfigError, match=f"{planted}.*belongs to uid 65534"):
        load_settings(home=str(home))


@pytest.mark.parametrize("mode", [0o666, 0o664, 0o646])
def test_settings_file_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    own = home / "inhouse.yaml"
    own.write_text("train:\n  epochs: 9\n")
    own.chmod(mode)
    with pytest.raises(ConfigError, match=f"{own} is writable by other users.*chmod go-w"):
        load_settings(home=str(home))
    explicit = tmp_path / "team.yaml"
    explicit.write_text("train:\n  epochs: 3\n")
    explicit.chmod(mode)
    with pytest.raises(ConfigError, match=f"{explicit} is writable by other users"):
        load_settings(home=str(home), config_file=str(explicit))


def test_explicit_config_wins_and_is_recorded_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "inhouse.yaml").write_text("train:\n  epochs: 9\n")
    (tmp_path / "run.yaml").write_text("train:\n  epochs: 4\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings(home=str(home), config_file="run.yaml").train.epochs == 4
    assert os.environ["INHOUSE_CONFIG"] == str(tmp_path / "run.yaml")  # jobs run elsewhere


def test_auth_off_is_refused_on_a_public_host_and_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(ConfigError, match="require_auth is false while serve.host is 0.0.0.0"):
        load_settings(security={"require_auth": False}, serve={"host": "0.0.0.0"})
    with pytest.raises(ConfigError, match="require_auth"):
        load_settings(security={"require_auth": False}, serve={"host": "10.0.0.5"})
    with caplog.at_level(logging.WARNING, logger="inhouse.security"):
        settings = load_settings(security={"require_auth": False})
    assert not settings.security.require_auth
    assert any("require_auth is false" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("host", ["203.0.113.7", "attacker.example", "10.0.0.5"])
def test_ray_token_never_goes_to_a_remote_http_host(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, host: str
) -> None:
    sent: list[tuple[str, dict[str, str]]] = []

    def fake_get(url: str, *, headers: dict[str, str], timeout: float) -> object:
        sent.append((url, headers))
        raise AssertionError("the token left the machine")

    monkeypatch.setattr(local_cluster.httpx, "get", fake_get)
    settings = load_settings(home=str(tmp_path), ray={"dashboard_host": host})
    local_cluster.ensure_token(settings.ray_token_path)
    with pytest.raises(ConfigError, match=f"refusing to send the Ray cluster token.*{host}"):
        local_cluster.dashboard_up(settings)
    assert sent == []
    assert "RAY_ADDRESS" not in local_cluster.client_env(settings)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "0.0.0.0"])
def test_ray_token_still_goes_to_this_machine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, host: str
) -> None:
    sent: list[str] = []

    class Answer:
        status_code = 200

    def fake_get(url: str, *, headers: dict[str, str], timeout: float) -> Answer:
        sent.append(headers["Authorization"])
        return Answer()

    monkeypatch.setattr(local_cluster.httpx, "get", fake_get)
    settings = load_settings(home=str(tmp_path), ray={"dashboard_host": host})
    token = local_cluster.ensure_token(settings.ray_token_path)
    assert local_cluster.dashboard_up(settings)
    assert sent == [f"Bearer {token}"]


def test_cli_refuses_a_planted_dashboard_before_sending_anything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sent: list[str] = []

    def fake_get(url: str, **_: object) -> None:
        sent.append(url)
        raise local_cluster.httpx.ConnectError("nothing listens in this test")

    monkeypatch.setattr(local_cluster.httpx, "get", fake_get)
    workdir = tmp_path / "checkout"
    workdir.mkdir()
    (workdir / "inhouse.yaml").write_text(PLANTED)
    monkeypatch.chdir(workdir)
    home = tmp_path / "home"
    # the planted file in the working directory is ignored: the dashboard stays on loopback
    assert main(["--home", str(home), "cluster", "status"]) == 3  # down, asked on loopback
    assert sent and all(url.startswith("http://127.0.0.1:") for url in sent)
    # the same settings given on purpose are refused before any request
    sent.clear()
    explicit = tmp_path / "remote.yaml"
    explicit.write_text("ray:\n  dashboard_host: 203.0.113.7\n")
    assert main(["--home", str(home), "--config", str(explicit), "cluster", "status"]) == 2
    assert sent == [] and "refusing to send the Ray cluster token" in capsys.readouterr().err
