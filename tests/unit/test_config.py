"""Settings precedence and the error messages users see."""

from __future__ import annotations

from pathlib import Path

import pytest

from inhouse.config import load_settings
from inhouse.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests define the environment themselves (the session sets test ports)."""
    import os

    for key in [k for k in os.environ if k.startswith("INHOUSE_")]:
        monkeypatch.delenv(key)


def test_precedence_flags_over_env_over_yaml(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "inhouse.yaml"
    config.write_text("train:\n  epochs: 9\n  lr: 0.5\nserve:\n  port: 9000\n")
    monkeypatch.setenv("INHOUSE_TRAIN__LR", "0.25")
    settings = load_settings(config_file=str(config), train={"batch_size": 7})
    assert settings.train.epochs == 9  # from YAML
    assert settings.train.lr == 0.25  # env beats YAML
    assert settings.train.batch_size == 7  # flag
    assert settings.serve.port == 9000
    monkeypatch.setenv("INHOUSE_TRAIN__EPOCHS", "2")
    assert load_settings(config_file=str(config), train={"epochs": 4}).train.epochs == 4


def test_errors_name_the_field_and_how_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INHOUSE_CONFIG", raising=False)
    with pytest.raises(ConfigError, match=r"train.epochs.*--epochs or INHOUSE_TRAIN__EPOCHS"):
        load_settings(train={"epochs": 0})
    with pytest.raises(ConfigError, match="Redis"):
        load_settings(ray={"gcs_port": 6379})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file="/nonexistent.yaml")


def test_defaults_are_secure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("INHOUSE_CONFIG", raising=False)
    settings = load_settings(home=str(tmp_path))
    assert settings.serve.host == "127.0.0.1" and settings.ray.dashboard_host == "127.0.0.1"
    assert settings.db_url == f"sqlite:///{tmp_path / 'inhouse.db'}"
    assert settings.serve.max_body_bytes == 1024 * 1024
