"""Register a causal LM from the user's files as a ``base`` version of the ``llm`` kind.

:func:`import_llm` takes a Hugging Face directory or a GGUF file (converted once through
:mod:`inhouse.kinds.llm.gguf`), checks it, and stores the float32 weights and the tokenizer as
one artifact (encrypted with a key ring); the chat template, generation config, end-of-sequence
ids and context length go into the spec. The lineage's ``source`` names the path, its kind
(``gguf`` or ``huggingface_dir``), the SHA-256 of its bytes (the GGUF file, or the weight files
of a directory one after another) and, for a directory, each file's own digest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inhouse.errors import InvalidInputError
from inhouse.kinds.modules import register_module
from inhouse.registry import ModelVersion, Registry


def _file_digests(root: Path, names: tuple[str, ...]) -> dict[str, str]:
    from inhouse.kinds.llm.source import sha256_files

    chosen = [p for p in sorted(root.iterdir()) if p.is_file()]
    return {
        p.name: sha256_files([p])
        for p in chosen
        if p.name in names or p.suffix in (".json", ".jinja")
    }


def _context_length(config: dict[str, Any], max_context: int | None) -> int:
    limit = int(config["max_position_embeddings"])
    if max_context is None:
        return limit
    if not 1 <= max_context <= limit:
        raise InvalidInputError(
            f"max_context must be 1..{limit} (the model's context window), not {max_context}"
        )
    return max_context


def import_llm(
    registry: Registry,
    source: Path,
    *,
    name: str,
    gguf_cache: Path,
    max_context: int | None = None,
) -> ModelVersion:
    """Check ``source`` and register it as a new ``base`` version of ``name``.

    Raises:
        InvalidInputError: ``source`` is missing, unsafe or not a causal LM (nothing is written,
            except a GGUF conversion into ``gguf_cache``).
    """
    from inhouse.kinds.llm.gguf import converted_dir
    from inhouse.kinds.llm.model import attach_tokenizer, generation_dict, llm_spec
    from inhouse.kinds.llm.source import check_causal_lm_dir, load_causal_lm, sha256_files
    from inhouse.models.hf import load_tokenizer
    from inhouse.models.text import tokenizer_bytes
    from inhouse.registry import validate_model_name

    validate_model_name(name)
    path = Path(source).expanduser().resolve()
    origin: dict[str, Any]
    if path.is_dir():
        checked = check_causal_lm_dir(path)
        weights = [checked.path / f for f in checked.weight_files]
        origin = {"kind": "huggingface_dir", "sha256": sha256_files(weights)}
        origin["files"] = _file_digests(checked.path, checked.weight_files)
    elif path.exists():
        converted = converted_dir(path, gguf_cache)
        checked = check_causal_lm_dir(converted.path)
        origin = {"kind": "gguf", "sha256": converted.sha256}
    else:
        raise InvalidInputError(f"{path} does not exist: give a model directory or a .gguf file")
    context_length = _context_length(checked.config, max_context)
    tokenizer = load_tokenizer(checked.path)
    module: Any = attach_tokenizer(load_causal_lm(checked), tokenizer_bytes(tokenizer))
    generation = generation_dict(module.generation_config)
    spec = llm_spec(
        module, tokenizer=tokenizer, generation=generation, context_length=context_length
    )
    lineage = {"source": {**origin, "path": str(path)}, "parent": None}
    metrics = {"parameters": spec["parameters"]}
    return register_module(
        registry, name, module=module, spec=spec, metrics=metrics, lineage=lineage
    )
