"""The tabular kind's compressing (``COMPRESSING``): prune + int8 of a float MLP, gated against
its parent on the held-out rows (:func:`inhouse.kinds.tabular.compression.compress_version`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from inhouse.config import CompressionSettings, GateSettings
    from inhouse.registry import Registry


class TabularCompressing:
    """:class:`inhouse.kinds.compressing.CompressingKind` for MLPs."""

    def compress(
        self,
        *,
        registry: Registry,
        engine: Engine,
        model: str,
        ref: str,
        settings: CompressionSettings,
        gate: GateSettings,
        promote: bool,
    ) -> dict[str, Any]:
        from inhouse.kinds.tabular.compression import compress_version

        return compress_version(
            registry=registry,
            engine=engine,
            model=model,
            ref=ref,
            settings=settings,
            gate=gate,
            promote=promote,
        )


COMPRESSING = TabularCompressing()
