"""Model builders: a spec (JSON-serialisable) in, a ``torch.nn.Module`` out.

:func:`inhouse.kinds.build_model` picks the builder of a version's kind.
"""

from inhouse.models.mlp import MLPSpec, Standardize, build_mlp

__all__ = ["MLPSpec", "Standardize", "build_mlp"]
