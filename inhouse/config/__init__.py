"""Every settings section of inhouse, as pydantic models.

Where values come from (``Settings``, :func:`load_settings`): CLI flags, then ``INHOUSE_*``
env vars, then the YAML file, then the defaults; see :mod:`inhouse.config.settings`. The
sections of one run (training, tuning, compression, the coordinator) are validated from
flags or stored JSON; those that can be differentially private share :class:`DPSettings`.
A bad value raises ``ConfigError`` naming the field and how to set it
(:func:`parse_model`). Ray actors, deployments and workers receive typed models:
:class:`ServeArgs` and the :class:`SettingsPayload` made by :func:`settings_payload`.
"""

from __future__ import annotations

from inhouse.config.compression import CompressionSettings, GateSettings, Runtime
from inhouse.config.coordinator import CoordinatorSettings
from inhouse.config.deployment import ServeArgs, SettingsPayload, settings_payload
from inhouse.config.dp import DPSettings
from inhouse.config.llm import LLMSettings
from inhouse.config.models import ModelsSettings
from inhouse.config.parse import parse_model
from inhouse.config.sections import RaySettings, SecuritySettings, ServeSettings
from inhouse.config.settings import FLAG_PREFIXES, Settings, load_settings
from inhouse.config.storage import StorageSettings
from inhouse.config.training import TextTrainOptions, TrainSettings
from inhouse.config.tune import TuneSettings

__all__ = [
    "FLAG_PREFIXES",
    "CompressionSettings",
    "CoordinatorSettings",
    "DPSettings",
    "GateSettings",
    "LLMSettings",
    "ModelsSettings",
    "RaySettings",
    "Runtime",
    "SecuritySettings",
    "ServeArgs",
    "ServeSettings",
    "Settings",
    "SettingsPayload",
    "StorageSettings",
    "TextTrainOptions",
    "TrainSettings",
    "TuneSettings",
    "load_settings",
    "parse_model",
    "settings_payload",
]
