"""The head warm-up (``--head-epochs``): a new classifier head trained on cached encoder
features before the fine-tune starts."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from inhouse.errors import ConfigError


def _bert_like(model: nn.Module) -> Any:
    """The Hugging Face classifier inside ``model`` when it is BERT-style (pooler + Linear head)."""
    hf: Any = getattr(model, "hf", model)
    inner = hf.get_base_model() if hasattr(hf, "get_base_model") else hf  # a peft wrapper
    base = getattr(inner, "base_model", None)
    if (
        getattr(base, "pooler", None) is None
        or not hasattr(inner, "classifier")
        or not hasattr(inner, "dropout")
    ):
        raise ConfigError(
            "the head warm-up needs a BERT-style classifier (pooler + classifier layer); "
            f"{type(inner).__name__} is not one"
        )
    return inner


@torch.inference_mode()
def head_features(
    model: nn.Module, tokenizer: Any, texts: list[str], *, max_length: int, batch_size: int = 64
) -> torch.Tensor:
    """The encoder's first-token ([CLS]) output the pooler reads, one row per text (no grad)."""
    from inhouse.models.text import encode_texts

    inner = _bert_like(model)
    device = next(inner.parameters()).device
    was_training = inner.training
    inner.eval()
    out = []
    for start in range(0, len(texts), batch_size):
        ids, mask = encode_texts(
            tokenizer, texts[start : start + batch_size], max_length=max_length
        )
        hidden = inner.base_model(input_ids=ids.to(device), attention_mask=mask.to(device))
        out.append(hidden.last_hidden_state[:, 0].float())
    inner.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


def warm_head(
    model: nn.Module,
    features: torch.Tensor,
    labels: list[int],
    *,
    epochs: int,
    lr: float = 2e-3,
    train_pooler: bool = False,
    batch_size: int = 64,
    seed: int = 0,
) -> float:
    """Train the classifier layer (and the pooler when ``train_pooler``: a full fine-tune trains
    it anyway; an adapter does not store it) on cached :func:`head_features`, the encoder frozen,
    so its forward pass runs once instead of once per epoch. Returns the last epoch's accuracy.

    A new head then starts the fine-tune from a sensible place: on Banking77 with MiniLM,
    pooler + classifier alone reach ~85 % test accuracy in seconds once the features exist.
    """
    inner = _bert_like(model)
    head, pooler = inner.classifier, inner.base_model.pooler
    params = [p for p in head.parameters() if p.requires_grad]
    if train_pooler:
        params += list(pooler.parameters())
    else:
        with torch.no_grad():
            features = pooler(features.unsqueeze(1))
    optimizer = torch.optim.AdamW(params, lr=lr)
    target = torch.tensor(labels, device=features.device)
    generator = torch.Generator().manual_seed(seed)
    correct = 0
    head.train()
    for _ in range(epochs):
        order = torch.randperm(len(target), generator=generator).to(features.device)
        correct = 0
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            pooled = pooler(features[batch].unsqueeze(1)) if train_pooler else features[batch]
            logits = head(inner.dropout(pooled))
            loss = F.cross_entropy(logits, target[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            correct += int((logits.argmax(dim=-1) == target[batch]).sum())
    return correct / max(len(target), 1)
