"""A GGUF file (llama.cpp's format) as a plain Hugging Face directory, converted once.

transformers reads a GGUF (``gguf_file=``, with the ``gguf`` package) and de-quantizes it to
float32, slowly (SmolLM2-135M: about 30 s here), and the model it returns cannot be saved as
is. :func:`converted_dir` therefore rebuilds the model from its config
(``from_config`` + ``load_state_dict``), saves it with the tokenizer (chat template included)
and the generation config as safetensors, and caches that directory under the SHA-256 of the
GGUF's bytes: ``<cache>/<sha256>/``. The directory is written under a temporary name and
renamed into place, so a reader sees a whole conversion or none; two converters racing both
finish and one result is kept.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from inhouse.errors import InvalidInputError
from inhouse.kinds.llm.source import sha256_files
from inhouse.models.text import quiet_transformers

MAGIC = b"GGUF"


@dataclass(frozen=True)
class Converted:
    """A converted GGUF: the HF directory, the GGUF's SHA-256, and whether it was cached."""

    path: Path
    sha256: str
    cached: bool


def gguf_cache(home: Path) -> Path:
    """Where converted GGUF files are kept under an inhouse home."""
    return home / "cache" / "gguf"


def check_gguf(path: Path) -> Path:
    """``path`` resolved, refusing anything that is not a readable GGUF file."""
    source = Path(path).expanduser().resolve()
    if not source.is_file():
        raise InvalidInputError(f"GGUF file {source} does not exist or is not a file")
    with source.open("rb") as handle:
        magic = handle.read(len(MAGIC))
    if magic != MAGIC:
        raise InvalidInputError(
            f"{source} is not a GGUF file (it does not start with the bytes {MAGIC!r})"
        )
    return source


def _convert(source: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from inhouse.kinds.llm.model import hf_config
    from inhouse.models.text import config_dict

    quiet_transformers()
    common = {"gguf_file": source.name, "local_files_only": True, "trust_remote_code": False}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), **common)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(source.parent), dtype=torch.float32, **common
        )
    except Exception as exc:  # transformers/gguf raise many types for files they cannot read
        raise InvalidInputError(f"{source}: transformers cannot read this GGUF: {exc}") from None
    config = hf_config(config_dict(loaded.config))
    rebuilt = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    rebuilt.load_state_dict(loaded.state_dict())
    rebuilt.generation_config = loaded.generation_config
    del loaded
    rebuilt.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))


def converted_dir(gguf: Path, cache: Path) -> Converted:
    """The HF directory of ``gguf`` under ``cache``, converting it on first use.

    Raises:
        InvalidInputError: not a GGUF file, or one transformers cannot read.
    """
    source = check_gguf(gguf)
    digest = sha256_files([source])
    target = cache / digest
    if target.is_dir():
        return Converted(path=target, sha256=digest, cached=True)
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}-", dir=cache))
    try:
        _convert(source, work)
        try:
            os.rename(work, target)
        except OSError:
            if not target.is_dir():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Converted(path=target, sha256=digest, cached=False)
