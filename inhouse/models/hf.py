"""Hugging Face models from local directories only, refusing anything that could run foreign code.

A model directory in the Hugging Face layout holds ``config.json``, safetensors weights
(``model.safetensors`` or shards listed in ``model.safetensors.index.json``) and a tokenizer
(``tokenizer.json``, ``vocab.txt``, ...). :func:`check_model_dir` refuses, with the reason:

- a directory missing any of the three;
- pickle-only weights (``pytorch_model.bin``, ``*.pt``, ``*.ckpt``...): unpickling runs code;
- a config or tokenizer config that asks for remote code (``auto_map``): ``trust_remote_code``
  is never turned on, so such a model could not run as its authors meant anyway.

Loading happens with ``HF_HUB_OFFLINE=1`` (set by :mod:`inhouse.models.text`, imported first) and
``local_files_only=True``: nothing is downloaded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from inhouse.errors import InvalidInputError
from inhouse.models.text import TextModel, quiet_transformers, text_spec, tokenizer_bytes

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "tokenizer.model")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".h5", ".msgpack")
MAX_CONFIG_BYTES = 1 << 20


@dataclass(frozen=True)
class ModelDir:
    """A checked model directory: where it is, its architecture and its weight files."""

    path: Path
    model_type: str
    config: dict[str, Any]
    weight_files: tuple[str, ...]


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise InvalidInputError(f"{what} {path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{what} {path} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} {path} is not a JSON object")
    return value


def _inside(root: Path, name: str) -> Path:
    """``root / name``, refusing names (or symlinks) that lead outside ``root``."""
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise InvalidInputError(f"{name!r} points outside the model directory {root}")
    return path


def _refuse_remote_code(root: Path, config: dict[str, Any]) -> None:
    sources = [(CONFIG_FILE, config)]
    tokenizer_config = root / "tokenizer_config.json"
    if tokenizer_config.is_file():
        sources.append(("tokenizer_config.json", _read_json(tokenizer_config, "tokenizer config")))
    for name, document in sources:
        if document.get("auto_map") or document.get("trust_remote_code"):
            raise InvalidInputError(
                f"{root} asks for remote code ({name} has auto_map): inhouse never runs code "
                "shipped with weights; use a model whose architecture is built into transformers"
            )


def _weight_files(root: Path) -> tuple[str, ...]:
    if (root / SAFETENSORS_FILE).is_file():
        _inside(root, SAFETENSORS_FILE)
        return (SAFETENSORS_FILE,)
    index_path = root / SAFETENSORS_INDEX
    if index_path.is_file():
        weight_map = _read_json(index_path, "safetensors index").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise InvalidInputError(f"{index_path} has no weight_map")
        shards = tuple(sorted({str(v) for v in weight_map.values()}))
        missing = [s for s in shards if not s.endswith(".safetensors") or not (root / s).is_file()]
        if missing:
            raise InvalidInputError(f"{root} is missing safetensors shards: {missing[:5]}")
        for shard in shards:
            _inside(root, shard)
        return shards
    pickled = sorted(p.name for p in root.iterdir() if p.name.endswith(PICKLE_SUFFIXES))
    if pickled:
        raise InvalidInputError(
            f"{root} has pickle-only weights ({', '.join(pickled[:3])}): loading pickle can run "
            "arbitrary code, so inhouse refuses it; convert the weights to safetensors on a "
            "trusted machine (model.save_pretrained(dir, safe_serialization=True))"
        )
    raise InvalidInputError(f"{root} has no weights: expected {SAFETENSORS_FILE}")


def check_model_dir(path: str | os.PathLike[str]) -> ModelDir:
    """Check that ``path`` is a complete, safe Hugging Face model directory.

    Raises:
        InvalidInputError: naming what is missing or refused and how to fix it.
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise InvalidInputError(f"model directory {root} does not exist or is not a directory")
    if not (root / CONFIG_FILE).is_file():
        raise InvalidInputError(f"{root} is missing {CONFIG_FILE}: not a Hugging Face model dir")
    config = _read_json(root / CONFIG_FILE, "model config")
    _refuse_remote_code(root, config)
    model_type = config.get("model_type")
    from transformers import CONFIG_MAPPING

    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise InvalidInputError(
            f"{root}/{CONFIG_FILE}: model_type {model_type!r} is not an architecture built into "
            "transformers"
        )
    weights = _weight_files(root)
    if not any((root / name).is_file() for name in TOKENIZER_FILES):
        raise InvalidInputError(
            f"{root} has no tokenizer: expected one of {', '.join(TOKENIZER_FILES)}"
        )
    return ModelDir(path=root, model_type=model_type, config=config, weight_files=weights)


def load_tokenizer(path: str | os.PathLike[str]) -> Any:
    """The (fast) tokenizer of a checked directory, offline and without remote code."""
    checked = check_model_dir(path)
    from transformers import AutoTokenizer

    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(
        str(checked.path), local_files_only=True, trust_remote_code=False
    )
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidInputError(f"{checked.path}: only fast (tokenizers) tokenizers are supported")
    return tokenizer


def load_pretrained(
    path: str | os.PathLike[str], *, class_names: list[str] | None = None
) -> nn.Module:
    """The model of a checked directory: the bare encoder, or with a new classification head.

    Args:
        path: the model directory.
        class_names: with them, a sequence classifier of ``len(class_names)`` labels (a head
            of another size in the directory is replaced); without, the encoder alone.
    """
    checked = check_model_dir(path)
    from transformers import AutoModel, AutoModelForSequenceClassification

    quiet_transformers()
    common: dict[str, Any] = {
        "local_files_only": True,
        "trust_remote_code": False,
        "use_safetensors": True,
    }
    if class_names is None:
        model: nn.Module = AutoModel.from_pretrained(str(checked.path), **common)
    else:
        if len(class_names) < 2:
            raise InvalidInputError("a classifier needs at least two classes")
        model = AutoModelForSequenceClassification.from_pretrained(
            str(checked.path),
            num_labels=len(class_names),
            id2label=dict(enumerate(class_names)),
            label2id={name: i for i, name in enumerate(class_names)},
            ignore_mismatched_sizes=True,
            **common,
        )
    return model.eval()


def classifier_from_dir(
    path: str, *, class_names: Sequence[str], max_length: int
) -> tuple[TextModel, Any, dict[str, Any]]:
    """A new classifier on the encoder in model directory ``path``: (module, tokenizer, spec)."""
    tokenizer = load_tokenizer(path)
    hf = load_pretrained(path, class_names=list(class_names))
    model = TextModel(hf, tokenizer_bytes(tokenizer))
    spec = text_spec(
        model,
        tokenizer=tokenizer,
        role="classifier",
        max_length=max_length,
        class_names=class_names,
    )
    return model, tokenizer, spec
