"""Register a trained Hugging Face sequence classifier directory (``inhouse models register
--hf DIR``) as a servable text ``classifier`` version, head included.

The directory is checked like an imported encoder's (complete, safetensors, no remote code:
:func:`inhouse.models.hf.check_model_dir`); its ``architectures`` must name a
``...ForSequenceClassification`` class, and its classes come from ``id2label`` (or from the
text data set named, which must have as many). The version then serves, explains, is
retrained and compressed by the text kind like one fine-tuned here.
"""

from __future__ import annotations

import os
from typing import Any

from inhouse.errors import InvalidInputError
from inhouse.registry import ModelVersion, Registry

CLASSIFIER_SUFFIX = "ForSequenceClassification"


def label_names(config: dict[str, Any]) -> list[str]:
    """The class names of a classifier config (``id2label`` in index order).

    Raises:
        InvalidInputError: not a sequence classifier, or labels missing or not 0..n-1.
    """
    architectures = config.get("architectures") or []
    if not any(str(a).endswith(CLASSIFIER_SUFFIX) for a in architectures):
        raise InvalidInputError(
            f"config.json names architectures {architectures}, not a *{CLASSIFIER_SUFFIX}: "
            "import an encoder with `inhouse models import DIR` and fine-tune it "
            "(inhouse train --base) instead"
        )
    id2label = config.get("id2label") or {}
    try:
        indexed = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError, AttributeError):
        raise InvalidInputError("config.json: id2label must map class indexes to names") from None
    if sorted(indexed) != list(range(len(indexed))) or len(indexed) < 2:
        raise InvalidInputError(
            f"config.json: id2label must name classes 0..n-1 (n >= 2), got {sorted(indexed)[:5]}"
        )
    return [indexed[i] for i in range(len(indexed))]


def register_classifier_dir(
    registry: Registry,
    path: str | os.PathLike[str],
    *,
    name: str,
    max_length: int,
    class_names: list[str] | None = None,
    dataset: str | None = None,
) -> ModelVersion:
    """Check the directory and register its classifier as a new version of ``name``.

    Args:
        class_names: the data set's classes, replacing ``id2label``'s names (same count).
        dataset: the text data set it answers for (recorded in the lineage).

    Raises:
        InvalidInputError: naming what is wrong with the directory or the classes.
    """
    from inhouse.kinds.modules import register_module
    from inhouse.kinds.text.versions import source_lineage
    from inhouse.models.hf import check_model_dir, load_pretrained, load_tokenizer
    from inhouse.models.text import TextModel, text_spec, tokenizer_bytes

    checked = check_model_dir(path)
    names = label_names(checked.config)
    if class_names is not None:
        if len(class_names) != len(names):
            raise InvalidInputError(
                f"{checked.path} classifies {len(names)} classes but data set {dataset!r} "
                f"has {len(class_names)}"
            )
        names = list(class_names)
    limit = int(checked.config.get("max_position_embeddings") or 512)
    tokenizer = load_tokenizer(checked.path)
    model = TextModel(load_pretrained(checked.path, class_names=names), tokenizer_bytes(tokenizer))
    spec = text_spec(
        model,
        tokenizer=tokenizer,
        role="classifier",
        max_length=min(max_length, limit),
        class_names=names,
    )
    lineage: dict[str, Any] = {"source": source_lineage(checked), "parent": None}
    if dataset is not None:
        lineage["dataset"] = dataset
    metrics = {"parameters": sum(p.numel() for p in model.hf.parameters())}
    return register_module(
        registry, name, module=model, spec=spec, metrics=metrics, lineage=lineage
    )
