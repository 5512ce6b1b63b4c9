"""Text models: a Hugging Face encoder (+ classification head) that carries its own tokenizer.

:class:`TextModel` holds the tokenizer (its ``tokenizer.json``) as a ``uint8`` buffer, so a
registry version is one artifact: weights and tokenizer are hashed, encrypted and compressed
together, and a replica needs nothing but the registry to tokenise. The spec (kind
``hf_text``) records the architecture (the Hugging Face config as JSON), the classes and the
sequence length; :func:`build_text_model` rebuilds the module from it without any file.

Roles: ``encoder`` (an imported base, no head), ``classifier`` (fine-tuned, possibly int8) and
``adapter`` (head-only or LoRA weights against a base version, see :mod:`inhouse.models.lora`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

# Set before transformers (and huggingface_hub, which reads it at import) is first imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from inhouse.errors import IntegrityError, InvalidInputError  # noqa: E402

TEXT_ARCH = "hf_text"  # the architecture (``spec["kind"]``) of every text version
ROLES = ("encoder", "classifier", "adapter")
SPECIAL_TOKENS = (
    "pad_token",
    "unk_token",
    "cls_token",
    "sep_token",
    "mask_token",
    "bos_token",
    "eos_token",
)
MAX_LENGTH_LIMIT = 512


class TextModel(nn.Module):
    """``hf`` (a transformers model) plus ``tokenizer_json`` (uint8 bytes of tokenizer.json)."""

    tokenizer_json: torch.Tensor
    hf: Any  # a transformers PreTrainedModel (or a peft wrapper while training an adapter)

    def __init__(self, hf: nn.Module, tokenizer_json: bytes | int) -> None:
        super().__init__()
        self.hf = hf
        size = tokenizer_json if isinstance(tokenizer_json, int) else len(tokenizer_json)
        buffer = torch.zeros(size, dtype=torch.uint8)
        if isinstance(tokenizer_json, bytes):
            buffer = torch.frombuffer(bytearray(tokenizer_json), dtype=torch.uint8).clone()
        self.register_buffer("tokenizer_json", buffer)

    @property
    def config(self) -> Any:
        return self.hf.config

    def get_input_embeddings(self) -> nn.Module:
        layer = self.hf.get_input_embeddings()
        if not isinstance(layer, nn.Module):
            raise InvalidInputError("the model has no input embedding layer")
        return layer

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (classifier) or the last hidden state (encoder)."""
        out = self.hf(input_ids=input_ids, attention_mask=attention_mask)
        logits = getattr(out, "logits", None)
        return logits if isinstance(logits, torch.Tensor) else out.last_hidden_state


def config_dict(config: Any) -> dict[str, Any]:
    """A Hugging Face config as plain JSON, without the local path it was read from."""
    document: dict[str, Any] = json.loads(config.to_json_string(use_diff=False))
    document.pop("_name_or_path", None)
    document.pop("transformers_version", None)
    return document


def text_spec(
    model: TextModel,
    *,
    tokenizer: Any,
    role: str,
    max_length: int,
    class_names: Sequence[str] = (),
) -> dict[str, Any]:
    """The registry spec of ``model``: enough to rebuild it (weights come from the artifact)."""
    if role not in ROLES:
        raise InvalidInputError(f"role must be one of {ROLES}, not {role!r}")
    if not 1 <= max_length <= MAX_LENGTH_LIMIT:
        raise InvalidInputError(f"max_length must be 1..{MAX_LENGTH_LIMIT}, not {max_length}")
    blob = bytes(model.tokenizer_json.numpy().tobytes())
    special = {k: getattr(tokenizer, k) for k in SPECIAL_TOKENS if getattr(tokenizer, k, None)}
    return {
        "kind": TEXT_ARCH,
        "role": role,
        "input": "text",
        "architecture": type(model.hf).__name__,
        "config": config_dict(model.config),
        "tokenizer": {
            "bytes": len(blob),
            "sha256": hashlib.sha256(blob).hexdigest(),
            "special_tokens": special,
        },
        "max_length": int(max_length),
        "class_names": list(class_names),
        "num_classes": len(class_names),
    }


def quiet_transformers() -> None:
    """No progress bars or load reports: the job and CLI print their own summaries."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


class AdapterWeights(nn.Module):
    """A bag of tensors whose state-dict keys are the adapter's own (dotted) names."""

    def __init__(self, shapes: dict[str, list[int]]) -> None:
        super().__init__()
        for key, shape in shapes.items():
            *path, leaf = key.split(".")
            parent: nn.Module = self
            for part in path:
                child = parent._modules.get(part)
                if child is None:
                    child = nn.Module()
                    parent.add_module(part, child)
                parent = child
            parent.register_buffer(leaf, torch.zeros(shape, dtype=torch.float32))

    @classmethod
    def of(cls, state: dict[str, torch.Tensor]) -> AdapterWeights:
        bag = cls({k: list(v.shape) for k, v in state.items()})
        bag.load_state_dict({k: v.detach().float().cpu() for k, v in state.items()})
        return bag


def _hf_config(spec: dict[str, Any]) -> Any:
    from transformers import AutoConfig

    document = dict(spec["config"])
    model_type = document.pop("model_type", None)
    try:
        return AutoConfig.for_model(model_type, **document)
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"text model spec has an unusable config: {exc}") from exc


def build_text_model(spec: dict[str, Any]) -> nn.Module:
    """The (randomly initialised) module a ``hf_text`` spec describes; weights load after."""
    quiet_transformers()
    role = spec.get("role")
    if role == "adapter":
        return AdapterWeights(spec["tensors"])
    from transformers import AutoModel, AutoModelForSequenceClassification

    config = _hf_config(spec)
    if role == "encoder":
        hf = AutoModel.from_config(config)  # type: ignore[no-untyped-call]
    elif role == "classifier":
        hf = AutoModelForSequenceClassification.from_config(config)  # type: ignore[no-untyped-call]
    else:
        raise IntegrityError(f"text model spec has unknown role {role!r}")
    return TextModel(hf, int(spec["tokenizer"]["bytes"])).eval()


def tokenizer_from(module: TextModel, spec: dict[str, Any]) -> Any:
    """The fast tokenizer carried by ``module`` (checked against the spec's hash)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    blob = bytes(module.tokenizer_json.cpu().numpy().tobytes())
    if hashlib.sha256(blob).hexdigest() != spec["tokenizer"]["sha256"]:
        raise IntegrityError("the tokenizer inside the model does not match its spec")
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=Tokenizer.from_str(blob.decode("utf-8")),
        model_max_length=int(spec["max_length"]),
        **spec["tokenizer"]["special_tokens"],
    )
    return tokenizer


def tokenizer_bytes(tokenizer: Any) -> bytes:
    """``tokenizer.json`` of a fast tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise InvalidInputError("only fast (tokenizers) tokenizers can be stored with a model")
    return str(backend.to_str()).encode("utf-8")


def encode_texts(
    tokenizer: Any, texts: Sequence[str], *, max_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` int64 tensors, padded to the longest text (<= max_length)."""
    batch = tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    return batch["input_ids"], batch["attention_mask"]


@torch.inference_mode()
def predict_proba(
    module: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int = 64,
) -> np.ndarray:
    """Class probabilities ``(len(texts), classes)`` in batches of ``batch_size``."""
    module.eval()
    out = []
    for start in range(0, len(texts), batch_size):
        ids, mask = encode_texts(
            tokenizer, texts[start : start + batch_size], max_length=max_length
        )
        out.append(torch.softmax(module(ids, mask).float(), dim=-1).numpy())
    return np.concatenate(out, axis=0)


def classifier_from(
    base: TextModel, base_spec: dict[str, Any], *, class_names: Sequence[str], max_length: int
) -> tuple[TextModel, dict[str, Any]]:
    """A classifier of ``class_names`` on a registered base (encoder, or classifier re-headed).

    A classifier base with the same classes is copied whole (head included).
    """
    from transformers import AutoModelForSequenceClassification

    config = _hf_config(base_spec)
    config.num_labels = len(class_names)
    config.id2label = dict(enumerate(class_names))
    config.label2id = {name: i for i, name in enumerate(class_names)}
    hf: Any = AutoModelForSequenceClassification.from_config(config)  # type: ignore[no-untyped-call]
    encoder = getattr(hf, hf.base_model_prefix)
    source = base.hf if base_spec["role"] == "encoder" else base.hf.base_model
    encoder.load_state_dict(source.state_dict())
    if base_spec["role"] == "classifier" and list(base_spec["class_names"]) == list(class_names):
        hf.load_state_dict(base.hf.state_dict())
    model = TextModel(hf, bytes(base.tokenizer_json.numpy().tobytes()))
    spec = dict(
        base_spec,
        role="classifier",
        config=config_dict(config),
        max_length=max_length,
        class_names=list(class_names),
        num_classes=len(class_names),
        architecture=type(hf).__name__,
    )
    return model.eval(), spec
