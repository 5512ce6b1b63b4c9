"""The tabular kind's compressing (``COMPRESSING``): prune + int8 of a float MLP, gated against
its parent on the held-out rows (:func:`inhouse.kinds.tabular.compression.compress_version`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from inhouse.kinds.tabular.compression import compress_version


class TabularCompressing:
    """:class:`inhouse.kinds.compressing.CompressingKind` for MLPs."""

    compress = staticmethod(compress_version)


COMPRESSING = TabularCompressing()

if TYPE_CHECKING:
    from inhouse.kinds.compressing import CompressingKind

    _: CompressingKind = COMPRESSING
