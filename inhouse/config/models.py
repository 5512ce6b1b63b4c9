"""The ``models`` section: which user code (model builders) every replica may run.

A builder (``inhouse models register --builder pkg.module:function``) is code that each
training worker and Serve replica imports and calls, so an admin names the module prefixes it
may come from; the default, an empty list, refuses every builder.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from inhouse.config.sections import Section

_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class ModelsSettings(Section):
    """User model code allowed on the cluster."""

    allowed_builder_prefixes: list[str] = Field(
        default_factory=list,
        description=(
            "Module prefixes builders may come from ('acme.models' allows 'acme.models.net:build'"
            " but not 'acme.modelsx'); empty: every builder is refused."
        ),
    )

    @field_validator("allowed_builder_prefixes")
    @classmethod
    def _dotted_names(cls, prefixes: list[str]) -> list[str]:
        for prefix in prefixes:
            if not _MODULE_RE.fullmatch(prefix):
                raise ValueError(
                    f"{prefix!r} is not a dotted module name (e.g. 'acme.models'); "
                    "'*' and empty prefixes are refused on purpose"
                )
        return prefixes
