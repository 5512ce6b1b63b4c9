"""``inhouse models import PATH --kind llm``: a causal LM from a local directory or GGUF file.

PATH is a Hugging Face causal-LM directory (safetensors weights, a fast tokenizer; remote code
refused) or a ``.gguf`` file, converted once and cached under ``<home>/cache/gguf/`` by its
SHA-256 (see :mod:`inhouse.kinds.llm.versions`). ``--max-context`` caps the context window
the version serves (default: the model's own). The first version of a model becomes its
``champion`` (what ``inhouse deploy`` serves).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from inhouse.config import Settings
from inhouse.kinds.importing import ImportingKind
from inhouse.registry import ModelVersion, Registry


class LLMImportOptions(BaseModel):
    """The ``llm`` kind's flags of ``models import``."""

    model_config = ConfigDict(extra="forbid")

    max_context: int | None = Field(
        None, ge=1, description="Context window in tokens (at most the model's; default: it)."
    )


class LLMImporting:
    """The importing half of the ``llm`` kind."""

    source_help = "a Hugging Face causal-LM directory (safetensors) or a .gguf file"
    options_type = LLMImportOptions

    def import_model(
        self,
        settings: Settings,
        registry: Registry,
        source: Path,
        *,
        name: str,
        options: BaseModel,
    ) -> ModelVersion:
        """Check ``source`` and register it as a new version of ``name``."""
        from inhouse.kinds.llm.gguf import gguf_cache
        from inhouse.kinds.llm.versions import import_llm

        chosen = LLMImportOptions.model_validate(options.model_dump())
        info = import_llm(
            registry,
            source,
            name=name,
            gguf_cache=gguf_cache(settings.home),
            max_context=chosen.max_context,
        )
        if "champion" not in registry.aliases(name):
            # The first version of a model is what `inhouse deploy NAME` serves; later imports
            # are promoted by the user (`inhouse models promote`) or a gate.
            registry.set_alias(name, "champion", info.version)
        return info

    def summary(self, info: ModelVersion) -> str:
        """What was registered: parameters, context, size, encryption."""
        spec = info.spec
        sealed = "encrypted" if info.encrypted else "NOT encrypted (no key ring)"
        return (
            f"{info.model} v{info.version}: {spec.get('architecture', 'causal LM')}, "
            f"{int(spec['parameters']) / 1e6:.1f}M parameters, context "
            f"{spec['context_length']} tokens, chat template "
            f"{'yes' if spec.get('chat_template') else 'no'}, "
            f"{info.size_bytes / 1e6:.1f} MB {sealed}"
        )


IMPORTING: ImportingKind = LLMImporting()
