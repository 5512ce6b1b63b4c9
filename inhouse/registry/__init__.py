"""Model registry: immutable versions with lineage, aliases such as ``champion``.

It owns the ``model_versions`` and ``model_aliases`` tables; others move an alias through
:func:`move_alias` (in their own transaction) or :meth:`Registry.set_alias`.
"""

from inhouse.registry.aliases import move_alias, read_alias, read_aliases
from inhouse.registry.parents import COMPRESSED_FORMAT, float_version
from inhouse.registry.store import ModelVersion, Registry, validate_model_name

__all__ = [
    "COMPRESSED_FORMAT",
    "ModelVersion",
    "Registry",
    "float_version",
    "move_alias",
    "read_alias",
    "read_aliases",
    "validate_model_name",
]
