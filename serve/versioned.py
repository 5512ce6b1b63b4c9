"""What the model replica and the explainer sidecar share: one registry version of one model,
loaded (decrypted in memory) at start and switched by Serve's ``reconfigure``.

A replica that serves an alias (``champion``) also follows it: a daemon thread re-resolves the
alias every second and loads a new version beside the old one, which keeps answering until
the switch, so a promotion or rollback by the coordinator reaches every replica within about a
second without a failed request. A replica serving ``champion`` also holds the version the
``candidate`` alias points at while a canary runs, so the ingress can send a share of the
requests to it (:meth:`VersionedModel._served`); on promotion that loaded module is reused.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from inhouse import services
from inhouse.config import Settings, SettingsPayload
from inhouse.errors import InhouseError, InvalidInputError
from inhouse.registry import ModelVersion

Loaded = tuple[ModelVersion, torch.nn.Module]

ALIAS_POLL_S = 1.0
_log = logging.getLogger(__name__)


def follow_alias(refresh: Callable[[], None]) -> None:
    """Call ``refresh`` every :data:`ALIAS_POLL_S` forever (a replica's daemon thread); a
    database that is briefly away only delays the next check."""
    while True:
        time.sleep(ALIAS_POLL_S)
        with contextlib.suppress(InhouseError):
            refresh()


def pinned(ref: str) -> bool:
    """Whether ``ref`` names a version number (which never moves) rather than an alias."""
    return re.fullmatch(r"[0-9]+", ref) is not None


class VersionedModel:
    """Base of the Serve deployments that hold a model version."""

    _settings: Settings
    _info: ModelVersion
    _module: torch.nn.Module

    def _init_model(self, model: str, settings: SettingsPayload, ref: str) -> None:
        torch.set_num_threads(1)
        self._settings = settings.load()
        self._registry = services.registry(self._settings)
        self._model_name = model
        self._ref = ref
        self._switch = threading.Lock()
        self._candidate: Loaded | None = None
        self._load(ref)
        threading.Thread(target=self._follow_alias, daemon=True, name="follow-alias").start()

    def _load(self, ref: str) -> None:
        with self._switch:
            info = self._registry.get(self._model_name, ref)
            if getattr(self, "_info", None) is not None and info.version == self._info.version:
                return
            candidate = self._candidate
            if candidate is not None and candidate[0].version == info.version:
                module = candidate[1]  # a promoted canary: already loaded
            else:
                module = self._registry.load_module(info)
            self._module, self._info = module, info

    def _follow_alias(self) -> None:
        """Reload when the served alias moves (promotion, rollback); pinned versions stay."""
        follow_alias(self._refresh)

    def _refresh(self) -> None:
        ref = self._ref
        if pinned(ref):
            return
        aliases = self._registry.aliases(self._model_name)
        if aliases.get(ref, self._info.version) != self._info.version:
            _log.info("%s: %s moved; loading it", self._model_name, ref)
            self._load(ref)
        if ref == "champion":
            self._follow_candidate(aliases.get("candidate"))

    def _follow_candidate(self, version: int | None) -> None:
        """Hold the canary's version beside the champion (drop it when the canary ends)."""
        if version is None or version == self._info.version:
            self._candidate = None
            return
        if self._candidate is not None and self._candidate[0].version == version:
            return
        info = self._registry.get(self._model_name, str(version))
        _log.info("%s: loading canary v%d", self._model_name, version)
        self._candidate = (info, self._registry.load_module(info))

    def _served(self, candidate: int | None = None) -> Loaded:
        """The version to answer with: the canary when asked for and loaded, else the champion."""
        held = self._candidate
        if candidate is not None and held is not None and held[0].version == candidate:
            return held
        return self._info, self._module

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve a different version: ``{"ref": "champion" | "<n>"}``."""
        self._ref = str(user_config.get("ref", "champion"))
        self._load(self._ref)

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
