"""Model registry: immutable versions with lineage, aliases such as ``champion``."""

from inhouse.registry.store import ModelVersion, Registry, validate_model_name

__all__ = ["ModelVersion", "Registry", "validate_model_name"]
