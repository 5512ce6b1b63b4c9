"""The one place model kinds are registered, and how a kind is found from a name or a spec."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inhouse.errors import InvalidInputError

if TYPE_CHECKING:
    from torch import nn

    from inhouse.kinds.compressing import CompressingKind
    from inhouse.kinds.datasets import DatasetsKind
    from inhouse.kinds.generating import GeneratingKind
    from inhouse.kinds.importing import ImportingKind
    from inhouse.kinds.serving import ServingKind
    from inhouse.kinds.training import TrainingKind
    from inhouse.kinds.tuning import TuningKind
    from inhouse.kinds.updating import UpdatingKind


@dataclass(frozen=True)
class ModelKind:
    """A registered kind: its name (also the kind of data set it trains on), the architecture
    names its versions' specs carry, and the package holding its parts (``model.py``: the
    module a spec describes; ``serving.py``; optionally ``training.py``, ``updating.py``,
    ``importing.py``, ``compressing.py``, ``tuning.py``, ``datasets.py`` and
    ``generating.py``)."""

    name: str
    spec_kinds: tuple[str, ...]
    package: str

    def build(self, spec: Mapping[str, Any]) -> nn.Module:
        """The (randomly initialised) module a version's ``spec`` describes, for its weights
        to load into (``<package>.model.build``, imported on first use)."""
        module: nn.Module = importlib.import_module(f"{self.package}.model").build(spec)
        return module

    @property
    def serving(self) -> ServingKind[Any, Any]:
        """The serving half (``<package>.serving.SERVING``), imported on first use."""
        serving: ServingKind[Any, Any] = importlib.import_module(f"{self.package}.serving").SERVING
        return serving

    @property
    def training(self) -> TrainingKind:
        """The training half (``<package>.training.TRAINING``), imported on first use; a
        kind without one (its models are imported) is a clear error."""
        training: TrainingKind = self._optional_part("training", "TRAINING", "trained")
        return training

    @property
    def updating(self) -> UpdatingKind:
        """The updating half (``<package>.updating.UPDATING``), imported on first use; a
        kind without one is a clear error."""
        updating: UpdatingKind = self._optional_part("updating", "UPDATING", "retrained")
        return updating

    @property
    def importing(self) -> ImportingKind:
        """The importing half (``<package>.importing.IMPORTING``); a kind without one is a
        clear error naming the kinds that have one."""
        importing: ImportingKind = self._optional_part("importing", "IMPORTING", "imported")
        return importing

    @property
    def compressing(self) -> CompressingKind:
        """The compressing half (``<package>.compressing.COMPRESSING``); a kind without one
        is a clear error."""
        compressing: CompressingKind = self._optional_part(
            "compressing", "COMPRESSING", "compressed"
        )
        return compressing

    @property
    def tuning(self) -> TuningKind:
        """The tuning half (``<package>.tuning.TUNING``: register a search's best trial); a
        kind without one is a clear error."""
        tuning: TuningKind = self._optional_part("tuning", "TUNING", "tuned")
        return tuning

    @property
    def datasets(self) -> DatasetsKind:
        """The data-set half (``<package>.datasets.DATASETS``: rows from a CSV); a kind
        without one is a clear error."""
        datasets: DatasetsKind = self._optional_part(
            "datasets", "DATASETS", "appended to from a CSV", what="data sets"
        )
        return datasets

    @property
    def generating(self) -> GeneratingKind[Any, Any]:
        """The generating half (``<package>.generating.GENERATING``: text out of a prompt,
        served behind the OpenAI routes); a kind without one is a clear error."""
        generating: GeneratingKind[Any, Any] = self._optional_part(
            "generating", "GENERATING", "asked to generate text"
        )
        return generating

    def has_part(self, part: str) -> bool:
        """Whether this kind's package has the optional part ``part`` (``importing``...)."""
        return importlib.util.find_spec(f"{self.package}.{part}") is not None

    def _optional_part(self, part: str, attribute: str, verb: str, what: str = "models") -> Any:
        if not self.has_part(part):
            raise InvalidInputError(
                f"{what} of kind {self.name!r} cannot be {verb} here; kinds that can: "
                f"{', '.join(kinds_with(part)) or 'none'}"
            )
        return getattr(importlib.import_module(f"{self.package}.{part}"), attribute)


_KINDS: dict[str, ModelKind] = {}


def register(kind: ModelKind) -> ModelKind:
    """Add ``kind`` (or replace the one of the same name); returns it."""
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Forget the kind called ``name`` (a kind registered for a while, e.g. by a test)."""
    _KINDS.pop(name, None)


register(ModelKind("tabular", ("mlp", "torch_module"), "inhouse.kinds.tabular"))
register(ModelKind("text", ("hf_text",), "inhouse.kinds.text"))
register(ModelKind("llm", ("hf_causal_lm",), "inhouse.kinds.llm"))


def known_kinds() -> list[str]:
    """The registered kind names, sorted."""
    return sorted(_KINDS)


def kinds_with(part: str) -> list[str]:
    """The registered kinds whose package has the optional part ``part``, sorted."""
    return [name for name in known_kinds() if _KINDS[name].has_part(part)]


def kind_named(name: str) -> ModelKind:
    """The kind called ``name``; an unknown name is a clear error listing the known ones."""
    try:
        return _KINDS[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown model kind {name!r}; known kinds: {', '.join(known_kinds())}"
        ) from None


def kind_for_spec(spec: Mapping[str, Any]) -> ModelKind:
    """The kind whose versions carry this architecture spec (``spec["kind"]``)."""
    arch = spec.get("kind")
    for kind in _KINDS.values():
        if arch in kind.spec_kinds:
            return kind
    raise InvalidInputError(f"no registered model kind serves architecture {arch!r}")
