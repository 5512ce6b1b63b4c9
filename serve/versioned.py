"""What the model replica and the explainer sidecar share: one registry version of one model,
loaded (decrypted in memory) by the version's kind at start and switched by Serve's
``reconfigure``.

A replica that serves an alias (``champion``) also follows it: a daemon thread re-resolves the
alias every second and loads a new version beside the old one, which keeps answering until
the switch, so a promotion or rollback by the coordinator reaches every replica within about a
second without a failed request. A replica serving ``champion`` also holds the version the
``candidate`` alias points at while a canary runs, so the ingress can send a share of the
requests to it (:meth:`VersionedModel._served`); on promotion that loaded version is reused.
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
from inhouse.kinds import ModelKind, register
from inhouse.kinds.serving import Loaded, ServingKind
from inhouse.registry import ModelVersion, Registry

Held = tuple[ModelVersion, Any]  # a registry version and what the kind loaded of it

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
    """Base of the Serve deployments that hold a model version (loaded by its kind)."""

    #: Whether a replica serving ``champion`` also holds the running canary's version.
    holds_canary = True
    _settings: Settings
    _registry: Registry
    _kind: ModelKind
    _serving: ServingKind[Any, Any]
    _info: ModelVersion
    _loaded: Any

    def _init_model(
        self,
        model: str,
        settings: SettingsPayload,
        ref: str,
        kind: ModelKind,
        loader: Callable[[Registry, ModelVersion], Loaded],
    ) -> None:
        torch.set_num_threads(1)
        # The registry rebuilds a version's module through its kind: a kind registered by the
        # process that built the app (a plugin's, a test's) must be known in this one too.
        register(kind)
        self._settings = settings.load()
        self._registry = services.registry(self._settings)
        self._model_name = model
        self._kind = kind
        self._serving = kind.serving
        self._loader = loader
        self._ref = ref
        self._switch = threading.Lock()
        self._candidate: Held | None = None
        self._load(ref)
        threading.Thread(target=self._follow_alias, daemon=True, name="follow-alias").start()

    def _get(self, ref: str) -> ModelVersion:
        info = self._registry.get(self._model_name, ref)
        if info.spec.get("kind") not in self._kind.spec_kinds:
            raise InvalidInputError(
                f"{self._model_name} v{info.version} is not a {self._kind.name} model"
            )
        return info

    def _load(self, ref: str) -> None:
        with self._switch:
            info = self._get(ref)
            if getattr(self, "_info", None) is not None and info.version == self._info.version:
                return
            candidate = self._candidate
            if candidate is not None and candidate[0].version == info.version:
                loaded = candidate[1]  # a promoted canary: already loaded
            else:
                loaded = self._loader(self._registry, info)
            self._loaded, self._info = loaded, info

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
        if ref == "champion" and self.holds_canary:
            self._follow_candidate(aliases.get("candidate"))

    def _follow_candidate(self, version: int | None) -> None:
        """Hold the canary's version beside the champion (drop it when the canary ends)."""
        if version is None or version == self._info.version:
            self._candidate = None
            return
        if self._candidate is not None and self._candidate[0].version == version:
            return
        info = self._get(str(version))
        _log.info("%s: loading canary v%d", self._model_name, version)
        self._candidate = (info, self._loader(self._registry, info))

    def _served(self, candidate: int | None = None) -> Any:
        """What answers: the canary's version when asked for and loaded, else the champion's."""
        held = self._candidate
        if candidate is not None and held is not None and held[0].version == candidate:
            return held[1]
        return self._loaded

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve a different version: ``{"ref": "champion" | "<n>"}``."""
        self._ref = str(user_config.get("ref", "champion"))
        self._load(self._ref)
