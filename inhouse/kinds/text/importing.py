"""The text kind's importing (``IMPORTING``): a local Hugging Face encoder directory.

``inhouse models import DIR --name NAME [--max-length N]`` checks the directory (complete,
offline, no remote code) before anything is recorded and stores it as an ``encoder`` version
(:func:`inhouse.kinds.text.versions.import_model_dir`), which ``inhouse train --base`` then
fine-tunes. The command line reads :class:`TextImportOptions` to build its parser, so this
module imports neither torch nor transformers until a model is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from inhouse.config import Settings
    from inhouse.registry import ModelVersion, Registry


class TextImportOptions(BaseModel):
    """The text kind's flags of ``models import``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_length: int = Field(default=128, ge=1, description="tokens per text")


class TextImporting:
    """:class:`inhouse.kinds.importing.ImportingKind` for Hugging Face encoders."""

    source_help = "a Hugging Face model directory: config.json + model.safetensors + tokenizer"
    options_type = TextImportOptions

    def import_model(
        self,
        settings: Settings,
        registry: Registry,
        source: Path,
        *,
        name: str,
        options: BaseModel,
    ) -> ModelVersion:
        """Check ``source`` and register it as an ``encoder`` version of ``name``."""
        from inhouse.kinds.text.versions import import_model_dir

        limit = TextImportOptions.model_validate(options.model_dump()).max_length
        return import_model_dir(registry, source, name=name, max_length=limit)

    def summary(self, info: ModelVersion) -> str:
        sealed = "encrypted" if info.encrypted else "NOT encrypted (encryption at rest is off)"
        model_type = info.spec.get("config", {}).get("model_type", "text")
        return (
            f"{info.model} v{info.version}: {model_type} encoder, "
            f"{info.metrics['parameters']:,} parameters, {info.size_bytes:,} bytes, {sealed}"
        )


IMPORTING = TextImporting()
