"""Settings: pydantic models read from CLI flags, ``INHOUSE_*`` env vars and a YAML file.

Precedence, highest first: explicit overrides (CLI flags), environment variables
(``INHOUSE_TRAIN__EPOCHS=10``; nested fields use ``__``), the YAML file named by
``--config`` or ``INHOUSE_CONFIG`` (else ``<home>/inhouse.yaml``; never ``./inhouse.yaml``:
see :func:`inhouse.private_paths.settings_file`), then the defaults.

All state lives under ``home`` (default ``~/.inhouse``), an absolute path so that the CLI,
Ray jobs (which run in a copy of the working directory) and Serve replicas agree on it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from inhouse.config.llm import LLMSettings
from inhouse.config.models import ModelsSettings
from inhouse.config.parse import Loc, describe
from inhouse.config.sections import RaySettings, SecuritySettings, ServeSettings
from inhouse.config.storage import StorageSettings
from inhouse.config.training import TrainSettings
from inhouse.dburl import read_url_file
from inhouse.errors import ConfigError
from inhouse.private_paths import check_auth_off, settings_file


class Settings(BaseSettings):
    """Everything inhouse reads; see the module docstring for where values come from."""

    model_config = SettingsConfigDict(
        env_prefix="INHOUSE_", env_nested_delimiter="__", extra="forbid"
    )

    home: Path = Field(Path.home() / ".inhouse", description="State: db, registry, keys, runs.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in home.")
    database_url_file: Path | None = Field(
        None, description="0600 file holding the URL (how jobs get one with a password)."
    )
    ray: RaySettings = Field(default_factory=RaySettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        home = init_settings().get("home") or env_settings().get("home")
        yaml_path = settings_file(
            explicit=os.environ.get("INHOUSE_CONFIG"),
            home=Path(home or cls.model_fields["home"].default),
        )
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if yaml_path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_path))
        return tuple(sources)

    @field_validator("database_url", mode="before")
    @classmethod
    def _empty_url_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value  # set empty beside database_url_file for jobs

    @model_validator(mode="after")
    def _resolve_and_refuse(self) -> Settings:
        if self.database_url is None and self.database_url_file is not None:
            self.database_url = read_url_file(self.database_url_file.expanduser())
        check_auth_off(require_auth=self.security.require_auth, host=self.serve.host)
        return self

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'inhouse.db'}"

    @property
    def registry_dir(self) -> Path:
        return self.home / "registry"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def key_dir(self) -> Path:
        return self.security.key_dir or self.home / "keys"

    @property
    def tls(self) -> bool:
        """Whether Serve speaks HTTPS (both certificate and key configured)."""
        return bool(self.security.tls_certfile and self.security.tls_keyfile)

    @property
    def serve_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.serve.host}:{self.serve.port}"

    @property
    def tls_dir(self) -> Path:
        return self.home / "tls"

    @property
    def client_token_path(self) -> Path:
        return self.home / "client_token"

    @property
    def ray_token_path(self) -> Path:
        return self.home / "ray_auth_token"


# The command line's flag prefix of each section that has flags (``--serve-port``); the
# training flags of ``inhouse train|tune|demo`` have none. Other sections have no flags.
FLAG_PREFIXES: dict[str, str] = {"ray": "ray_", "serve": "serve_", "llm": "llm_", "train": ""}
_TOP_LEVEL_FLAGS = ("home", "database_url")


def _flag(loc: Loc) -> str | None:
    """The ``inhouse`` flag that sets the field at ``loc``, or None when no flag does."""
    name: str | None = None
    if len(loc) == 1 and loc[0] in _TOP_LEVEL_FLAGS:
        name = str(loc[0])
    elif len(loc) >= 2 and str(loc[0]) in FLAG_PREFIXES:
        section = Settings.model_fields[str(loc[0])].annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            if str(loc[1]) in section.model_fields:
                name = FLAG_PREFIXES[str(loc[0])] + str(loc[1])
    return None if name is None else "--" + name.replace("_", "-")


def _where(loc: Loc) -> str:
    """How to set the field at ``loc``: its flag and env var, or the YAML file."""
    if not loc:
        return "check --config or INHOUSE_CONFIG"
    env = "INHOUSE_" + "__".join(str(part) for part in loc[:2]).upper()
    flag = _flag(loc)
    return f"set it with {flag} or {env}" if flag else f"set it with {env}"


def load_settings(*, config_file: str | None = None, **overrides: Any) -> Settings:
    """Read settings; ``overrides`` (nested dicts for sections) win over env and YAML.

    Raises:
        ConfigError: naming each bad field and how to set it.
    """
    if config_file is not None:
        if not Path(config_file).is_file():
            raise ConfigError(f"config file {config_file} does not exist")
        # Absolute: jobs inherit it and run in another working directory.
        os.environ["INHOUSE_CONFIG"] = str(Path(config_file).resolve())
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        parts = [describe(err, root="settings", hint=_where) for err in exc.errors()]
        raise ConfigError("invalid settings: " + "; ".join(parts)) from None
    settings.home = settings.home.expanduser().resolve()
    return settings
