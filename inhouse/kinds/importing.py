"""The importing half of a model kind (``ImportingKind``): a model from the user's own files.

``inhouse models import PATH --kind KIND --name NAME`` finds the kind (``ModelKind.importing``),
reads the kind's own flags into its :attr:`ImportingKind.options_type` (every field is a flag
of the command; a flag another kind owns is refused by name) and calls
:meth:`ImportingKind.import_model`, which checks ``PATH`` before anything is recorded and
registers the version like every other (weights through :func:`inhouse.kinds.register_module`:
encrypted at rest with a key ring; lineage naming the source and its SHA-256).

A kind without an ``importing.py`` cannot be imported (its models are trained here); asking
for it is a clear error naming the kinds that can.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pydantic import BaseModel

    from inhouse.config import Settings
    from inhouse.registry import ModelVersion, Registry


class ImportingKind(Protocol):
    """What ``inhouse models import`` calls; one per importable kind
    (``kinds/<name>/importing.py``, whose ``IMPORTING`` is one of these)."""

    #: One line for ``--help``: what PATH is for this kind.
    source_help: str

    @property
    def options_type(self) -> type[BaseModel]:
        """The kind's import options; every field is a flag of ``models import``."""
        ...

    def import_model(
        self,
        settings: Settings,
        registry: Registry,
        source: Path,
        *,
        name: str,
        options: BaseModel,
    ) -> ModelVersion:
        """Check ``source`` (refuse with an :class:`inhouse.errors.InvalidInputError` naming
        what is wrong, before anything is written) and register it as a new version of
        ``name``."""
        ...

    def summary(self, info: ModelVersion) -> str:
        """One line for the user: what was registered (size, parameters, encrypted or not)."""
        ...
