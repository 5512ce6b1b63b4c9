"""The platform's sections: where the Ray cluster is, the Serve front door, security."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MiB = 1024 * 1024


class Section(BaseModel):
    """A settings section: unknown fields are refused (a typo is an error, not a no-op)."""

    model_config = ConfigDict(extra="forbid")


class RaySettings(Section):
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


class ServeSettings(Section):
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


class SecuritySettings(Section):
    """Encryption at rest, TLS and access control."""

    encrypt_at_rest: bool = Field(True, description="Envelope-encrypt artifacts/checkpoints.")
    key_dir: Path | None = Field(None, description="Master key ring (default <home>/keys).")
    tls_certfile: Path | None = Field(None, description="Serve HTTPS certificate (PEM).")
    tls_keyfile: Path | None = Field(None, description="Serve HTTPS private key (PEM, 0600).")
    require_auth: bool = Field(True, description="Serve routes need an API token.")
