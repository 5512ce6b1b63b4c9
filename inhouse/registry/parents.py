"""Following a version to the float version it was made from (its lineage ``parent``).

A ``compressed`` version (pruned and quantized by :mod:`inhouse.kinds.tabular.compression`) is an
artifact for serving; retraining, fine-tuning and explaining start from the float weights it
was made from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inhouse.registry.store import ModelVersion, Registry

COMPRESSED_FORMAT = "compressed"


def float_version(registry: Registry, info: ModelVersion) -> ModelVersion:
    """``info``, or for a compressed version the float version it was made from."""
    if info.format != COMPRESSED_FORMAT:
        return info
    parent = info.lineage.get("parent") or {}
    return registry.get(str(parent.get("model", info.model)), str(parent["version"]))
