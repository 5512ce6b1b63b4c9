"""What the model replica and the explainer sidecar share: one registry version of one model,
loaded (decrypted in memory) at start and switched by Serve's ``reconfigure``."""

from __future__ import annotations

from typing import Any

import torch

from inhouse import services
from inhouse.config import Settings, load_settings
from inhouse.errors import InvalidInputError
from inhouse.registry import ModelVersion


class VersionedModel:
    """Base of the Serve deployments that hold a model version."""

    _settings: Settings
    _info: ModelVersion
    _module: torch.nn.Module

    def _init_model(self, model: str, settings: dict[str, Any], ref: str) -> None:
        torch.set_num_threads(1)
        self._settings = load_settings(**settings)
        self._registry = services.registry(self._settings)
        self._model_name = model
        self._load(ref)

    def _load(self, ref: str) -> None:
        info = self._registry.get(self._model_name, ref)
        self._module = self._registry.load_module(info)
        self._info = info

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve a different version: ``{"ref": "champion" | "<n>"}``."""
        ref = str(user_config.get("ref", "champion"))
        if ref != str(self._info.version):
            self._load(ref)

    def _model_metadata(self) -> dict[str, Any]:
        spec = self._info.spec
        return {
            "model": self._model_name,
            "version": self._info.version,
            "n_features": int(spec["input_dim"]),
            "n_classes": int(spec["num_classes"]),
            "class_names": list(spec.get("class_names", [])),
            "feature_names": list(spec.get("feature_names", [])),
        }

    @staticmethod
    def _check_width(x: Any, info: ModelVersion) -> None:
        expected = int(info.spec["input_dim"])
        if x.ndim != 2 or x.shape[1] != expected:
            raise InvalidInputError(f"expected shape [n, {expected}], got {list(x.shape)}")
