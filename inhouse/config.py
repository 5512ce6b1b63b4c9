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
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from inhouse.dburl import read_url_file
from inhouse.errors import ConfigError
from inhouse.private_paths import check_auth_off, settings_file

MiB = 1024 * 1024


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RaySettings(_Section):
    """Where the Ray cluster is and how the local one is started."""

    gcs_port: int = Field(6390, ge=1024, le=65535, description="GCS port of the local head.")
    dashboard_host: str = Field("127.0.0.1", description="Dashboard/Jobs API bind address.")
    dashboard_port: int = Field(8265, ge=1024, le=65535)
    agent_port: int = Field(52365, ge=1024, le=65535, description="Dashboard agent HTTP port.")
    client_port: int = Field(10001, ge=1024, le=65535, description="Ray Client server port.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs the local head offers.")
    num_gpus: int | None = Field(None, ge=0)

    @field_validator("gcs_port")
    @classmethod
    def _not_redis(cls, port: int) -> int:
        if port == 6379:
            raise ValueError("6379 is Redis's port on this machine; pick another GCS port")
        return port

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.dashboard_host}:{self.dashboard_port}"


class ServeSettings(_Section):
    """The HTTP front door and the model replicas."""

    host: str = Field("127.0.0.1", description="Serve HTTP bind address (0.0.0.0 exposes it).")
    port: int = Field(8000, ge=1, le=65535)
    max_body_bytes: int = Field(1 * MiB, ge=1024, description="Largest request body accepted.")
    body_timeout_s: float = Field(
        10.0, gt=0, le=600, description="A request body must arrive within this time (408)."
    )
    max_instances: int = Field(1024, ge=1, description="Largest batch in one request.")
    max_batch_size: int = Field(32, ge=1, description="Dynamic batching: rows per model call.")
    batch_wait_timeout_s: float = Field(
        0.0, ge=0, le=1, description="Wait for more rows (0: batch only what is already queued)."
    )
    max_ongoing_requests: int = Field(64, ge=1, description="Per replica; Ray's 5 is too low.")
    num_replicas: int = Field(1, ge=1, description="Model replicas when autoscaling is off.")
    autoscaling: bool = Field(
        False, description="Scale model replicas between min_replicas and max_replicas on load."
    )
    min_replicas: int = Field(1, ge=1, description="Autoscaling floor (replicas kept when idle).")
    max_replicas: int = Field(4, ge=1, description="Autoscaling ceiling.")
    target_ongoing_requests: float = Field(
        16.0, gt=0, description="Autoscaling aims at this many in-flight requests per replica."
    )
    upscale_delay_s: float = Field(
        5.0, ge=0, description="Load must stay above target this long before adding replicas."
    )
    downscale_delay_s: float = Field(
        30.0, ge=0, description="Load must stay below target this long before removing replicas."
    )
    look_back_period_s: float = Field(
        30.0, gt=0, description="Autoscaling averages the load over this window."
    )
    metrics_interval_s: float = Field(
        10.0, gt=0, description="How often replicas and handles report their load to Serve."
    )
    rate_limit_per_s: float = Field(1000.0, ge=0, description="Requests/s per token; 0: no limit.")
    rate_limit_burst: int = Field(2000, ge=1, description="Requests a token may send at once.")
    preauth_rate_per_s: float = Field(
        10.0, ge=0, description="Failed auth attempts/s per client address; 0: no limit."
    )
    preauth_burst: int = Field(50, ge=1, description="Failed auth attempts per address at once.")
    preauth_global_rate_per_s: float = Field(
        100.0, gt=0, description="DB reads/s for tokens not seen yet, all clients together."
    )
    preauth_global_burst: int = Field(200, ge=1, description="Such reads at once.")
    audit_failure_window_s: float = Field(
        10.0, ge=0, le=3600, description="Repeated refusals: one audit entry per window; 0: each."
    )

    @model_validator(mode="after")
    def _replica_bounds(self) -> ServeSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})"
            )
        return self

    def autoscaling_config(self) -> dict[str, float] | None:
        """Serve's ``autoscaling_config`` for the model replicas; None when it is off."""
        if not self.autoscaling:
            return None
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
            "look_back_period_s": self.look_back_period_s,
            "metrics_interval_s": self.metrics_interval_s,
        }

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class TrainSettings(_Section):
    """One training run of the tabular MLP."""

    dataset: str = Field("digits", description="Data set (table) to train on.")
    model: str = Field("digits", description="Registry name of the trained model.")
    epochs: int = Field(5, ge=1, le=10_000)
    batch_size: int = Field(32, ge=1, le=65_536, description="Per worker.")
    lr: float = Field(3e-3, gt=0, le=10)
    hidden: list[int] = Field(default_factory=lambda: [64, 64])
    num_workers: int = Field(2, ge=1, le=1024)
    use_gpu: bool = False
    seed: int = 0
    max_failures: int = Field(2, ge=0, description="Worker failures survived by resuming.")
    promote: bool = Field(True, description="Make the new version the champion.")
    compress: bool = Field(
        True, description="Also register a pruned+int8 version; serve it if it passes the gate."
    )
    dp: bool = Field(False, description="Differentially private training (Opacus DP-SGD).")
    noise_multiplier: float | None = Field(
        None, gt=0, description="DP: Gaussian noise / clipping norm (or give --target-epsilon)."
    )
    target_epsilon: float | None = Field(
        None, gt=0, description="DP: noise is chosen so the planned epochs spend this epsilon."
    )
    target_delta: float = Field(1e-5, gt=0, lt=1, description="DP: delta of the guarantee.")
    max_grad_norm: float = Field(1.0, gt=0, description="DP: per-sample gradient clipping norm.")
    accountant: Literal["prv", "rdp"] = Field("prv", description="DP: privacy accountant.")
    dp_bounds: Path | None = Field(
        None, description="DP: JSON of public per-feature bounds {feature: [lo, hi]}."
    )


class SecuritySettings(_Section):
    """Encryption at rest, TLS and access control."""

    encrypt_at_rest: bool = Field(True, description="Envelope-encrypt artifacts/checkpoints.")
    key_dir: Path | None = Field(None, description="Master key ring (default <home>/keys).")
    tls_certfile: Path | None = Field(None, description="Serve HTTPS certificate (PEM).")
    tls_keyfile: Path | None = Field(None, description="Serve HTTPS private key (PEM, 0600).")
    require_auth: bool = Field(True, description="Serve routes need an API token.")


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
FLAG_PREFIXES: dict[str, str] = {"ray": "ray_", "serve": "serve_", "train": ""}
_TOP_LEVEL_FLAGS = ("home", "database_url")


def _flag(loc: tuple[int | str, ...]) -> str | None:
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


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        if not err["loc"]:
            parts.append(f"{field}: {err['msg']} (check --config or INHOUSE_CONFIG)")
            continue
        env = "INHOUSE_" + "__".join(str(p) for p in err["loc"][:2]).upper()
        flag = _flag(err["loc"])
        where = f"{flag} or {env}" if flag else env
        parts.append(f"{field}: {err['msg']} (set it with {where})")
    return "invalid settings: " + "; ".join(parts)


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
        raise ConfigError(_describe(exc)) from None
    settings.home = settings.home.expanduser().resolve()
    return settings
