"""The toy kind's ``ImportingKind``: a JSON file ``{"scale": <number>}`` becomes a version;
the threshold is the kind's own ``--threshold`` flag of ``models import``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field

from inhouse.config import Settings
from inhouse.errors import InvalidInputError
from inhouse.kinds import register_module
from inhouse.registry import ModelVersion, Registry
from tests.toy_kind.model import SPEC, build


class ToyImportOptions(BaseModel):
    threshold: int = Field(default=10, ge=1, description="characters above which a text is long")


class ToyImporting:
    source_help = 'a JSON file {"scale": <number>}'
    options_type = ToyImportOptions

    def import_model(
        self, settings: Settings, registry: Registry, source: Path, *, name: str, options: Any
    ) -> ModelVersion:
        try:
            scale = float(json.loads(source.read_text())["scale"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(f"{source}: not a toy model file ({exc})") from None
        spec = SPEC | {"threshold": options.threshold}
        module = build(spec)
        with torch.no_grad():
            module.scale.fill_(scale)
        lineage = {"source": {"kind": "toy_json", "path": str(source)}, "parent": None}
        return register_module(
            registry, name, module=module, spec=spec, metrics={}, lineage=lineage
        )

    def summary(self, info: ModelVersion) -> str:
        return f"{info.model} v{info.version}: toy, threshold {info.spec['threshold']}"


IMPORTING = ToyImporting()
