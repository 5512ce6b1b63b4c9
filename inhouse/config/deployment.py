"""What crosses a Ray boundary: the arguments of the Serve application, and the part of the
settings an actor, deployment or worker rebuilds the full settings from on its own node."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from inhouse.config.llm import LLMSettings
from inhouse.config.sections import SecuritySettings, ServeSettings
from inhouse.config.settings import Settings, load_settings
from inhouse.config.storage import StorageSettings


class ServeArgs(BaseModel):
    """What ``build_app`` needs: the models to serve and where the platform state lives."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(min_length=1, description="Registry model names to serve.")
    ref: str = Field("champion", description="Version or alias served for each model.")
    home: str | None = Field(None, description="inhouse home (default: settings).")
    database_url: str | None = None
    batching: bool = Field(True, description="Dynamic batching (off: one request per call).")
    max_explainer_replicas: int = Field(2, ge=1, description="Autoscaling cap per explainer.")
    explainers: bool = Field(True, description="Start an explainer sidecar per model.")


class SettingsPayload(BaseModel):
    """The settings a process on another node starts from (Ray pickles it as it is).

    Its values win over that node's ``INHOUSE_*`` env vars and YAML file; the sections not
    carried here (ray, train) come from them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path
    database_url: str | None
    serve: ServeSettings
    security: SecuritySettings
    llm: LLMSettings
    storage: StorageSettings = StorageSettings()

    def load(self) -> Settings:
        """The full settings on this node.

        Raises:
            ConfigError: when this node's env or YAML holds a bad value.
        """
        return load_settings(**self.model_dump(mode="json"))


def settings_payload(settings: Settings) -> SettingsPayload:
    """The part of ``settings`` that Ray actors, deployments and workers need."""
    return SettingsPayload(
        home=settings.home,
        database_url=settings.database_url,
        serve=settings.serve.model_copy(),
        security=settings.security.model_copy(),
        llm=settings.llm.model_copy(),
        storage=settings.storage.model_copy(),
    )
