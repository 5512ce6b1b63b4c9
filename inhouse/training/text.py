"""Framework-free pieces of text fine-tuning, shared by ``jobs/train_text.py`` and the benchmark.

:class:`inhouse.config.TextTrainOptions` is the typed configuration (flags generated from it);
:func:`start_model` builds the model a run starts from (a local directory or a registered
version) and applies the incremental method; :func:`train_epoch` runs one epoch over this
worker's shard with dynamic padding, mixed precision on CUDA only, and a linear schedule.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from inhouse.config import Settings, TextTrainOptions
from inhouse.data.text_import import TextRows
from inhouse.errors import ConfigError, InvalidInputError


def start_model(
    settings: Settings, options: TextTrainOptions, class_names: list[str]
) -> tuple[nn.Module, Any, dict[str, Any], Any]:
    """``(model, tokenizer, spec, base_version)`` a run starts from, method applied.

    The seed is set first so every worker draws the same new head.
    """
    from inhouse import services
    from inhouse.models.lora import float_version, load_text, lora_config, prepare_incremental
    from inhouse.models.text import classifier_from, classifier_from_dir

    torch.manual_seed(options.seed)
    base = None
    if options.model_dir is not None:
        model, tokenizer, spec = classifier_from_dir(
            options.model_dir, class_names=class_names, max_length=options.max_length
        )
    else:
        name, _, ref = str(options.base).partition(":")
        registry = services.registry(settings)
        base = float_version(registry, registry.get(name, ref or "champion"))
        if base.spec.get("role") == "adapter":
            raise InvalidInputError(f"{name} v{base.version} is an adapter; name its base instead")
        start, tokenizer, base_spec = load_text(registry, base)
        torch.manual_seed(options.seed)
        model, spec = classifier_from(
            start, base_spec, class_names=class_names, max_length=options.max_length
        )
    if options.method != "full":
        prepare_incremental(
            model, options.method, lora=lora_config(r=options.lora_r, alpha=options.lora_alpha)
        )
    if options.gradient_checkpointing:
        hf: Any = getattr(model, "hf")
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, tokenizer, spec, base  # DP: the driver checks the layers (text_dp)


def shard(
    rows: TextRows, *, options: TextTrainOptions, epoch: int, rank: int, world: int
) -> list[int]:
    """This worker's row indices for ``epoch``: seeded subsample, shuffled, split by rank."""
    order = list(range(len(rows)))
    if options.train_limit is not None and options.train_limit < len(order):
        order = sorted(random.Random(options.seed).sample(order, options.train_limit))
    random.Random(options.seed * 1000 + epoch).shuffle(order)
    per_worker = len(order) // world  # equal step counts keep DDP's collectives in step
    return order[rank * per_worker : (rank + 1) * per_worker]


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU has it, else fp16; ``None`` (full precision) off CUDA."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def set_learning_rate(
    optimizer: torch.optim.Optimizer, options: TextTrainOptions, *, done: int, total: int
) -> None:
    """Linear warm-up over ``options.warmup`` of the ``total`` steps, then linear decay."""
    warm = max(1, int(total * options.warmup))
    factor = (done + 1) / warm if done < warm else max(0.0, (total - done) / (total - warm))
    for group in optimizer.param_groups:
        group["lr"] = options.learning_rate() * factor


def train_epoch(
    model: nn.Module,
    tokenizer: Any,
    rows: TextRows,
    optimizer: torch.optim.Optimizer,
    *,
    options: TextTrainOptions,
    epoch: int,
    rank: int = 0,
    world: int = 1,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """One epoch over this worker's shard; returns loss sum, correct and seen counts."""
    from inhouse.models.text import encode_texts

    device = device or torch.device("cpu")
    indices = shard(rows, options=options, epoch=epoch, rank=rank, world=world)
    steps = math.ceil(len(indices) / options.batch_size)
    dtype = autocast_dtype(device) if options.mixed_precision else None
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    total = steps * options.epochs
    for step in range(steps):
        set_learning_rate(optimizer, options, done=epoch * steps + step, total=total)
        batch = indices[step * options.batch_size : (step + 1) * options.batch_size]
        ids, mask = encode_texts(
            tokenizer, [rows.texts[i] for i in batch], max_length=options.max_length
        )
        labels = torch.tensor([rows.labels[i] for i in batch], device=device)
        ids, mask = ids.to(device), mask.to(device)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(ids, mask)
            loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        scaler.step(optimizer)
        scaler.update()
        loss_sum += float(loss.detach()) * len(batch)
        correct += int((logits.argmax(dim=-1) == labels).sum())
        seen += len(batch)
    return {
        "loss_sum": loss_sum,
        "correct": correct,
        "seen": seen,
        "amp": str(dtype).removeprefix("torch.") if dtype is not None else "off",
    }


@torch.inference_mode()
def evaluate_texts(
    model: nn.Module,
    tokenizer: Any,
    rows: TextRows,
    options: TextTrainOptions,
    *,
    limit: int | None = None,
    device: torch.device | None = None,
) -> float:
    """Accuracy on the first ``limit`` rows (all by default)."""
    from inhouse.models.text import encode_texts

    device = device or torch.device("cpu")
    n = len(rows) if limit is None else min(limit, len(rows))
    if n == 0:
        return float("nan")
    model.eval()
    correct = 0
    for start in range(0, n, 64):
        stop = min(start + 64, n)
        ids, mask = encode_texts(tokenizer, rows.texts[start:stop], max_length=options.max_length)
        logits = model(ids.to(device), mask.to(device))
        labels = torch.tensor(rows.labels[start:stop], device=device)
        correct += int((logits.argmax(dim=-1) == labels).sum())
    return correct / n


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
