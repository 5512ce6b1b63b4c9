"""The toy kind's ``CompressingKind``: a copy of the version with its scale rounded, registered
with lineage naming its parent (enough to show ``inhouse compress`` reaching a kind)."""

from __future__ import annotations

from typing import Any

import torch

from inhouse.kinds import load_module, register_module


class ToyCompressing:
    def compress(
        self,
        *,
        registry: Any,
        engine: Any,
        model: str,
        ref: str,
        settings: Any,
        gate: Any,
        promote: bool,
    ) -> dict[str, Any]:
        parent = registry.get(model, ref)
        module = load_module(registry, parent)
        with torch.no_grad():
            module.scale.copy_(module.scale.round())
        lineage = {"parent": {"model": model, "version": parent.version}}
        info = register_module(
            registry, model, module=module, spec=parent.spec, metrics={}, lineage=lineage
        )
        if promote:
            registry.set_alias(model, "champion", info.version)
        return {
            "model": model,
            "version": info.version,
            "parent_version": parent.version,
            "promoted": promote,
            "message": "rounded",
            "report_markdown": f"prune {settings.prune_amount}",
        }


COMPRESSING = ToyCompressing()
