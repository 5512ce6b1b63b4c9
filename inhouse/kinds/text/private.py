"""DP-SGD for text fine-tuning: which methods Opacus can train privately, and the private epoch.

The tabular machinery is reused as it is: :func:`inhouse.training.private_run.reserve` plans
the run and charges the ledger before any worker starts, :func:`inhouse.training.dp.make_private`
wraps each worker (``DPDDP``, a distributed Poisson sampler over the training rows' indices,
per-sample clipping, noise), and its accountant history goes into every checkpoint.

Whether a text model can be trained privately is measured, not assumed: one backward pass of two
public probe texts through Opacus's ``GradSampleModule`` must give every trainable parameter a
per-sample gradient of batch size 2 whose sum is the ordinary gradient. ``--method head`` (the
classifier) and ``--method lora`` (LoRA ``A``/``B`` are ``nn.Linear``) pass; a full fine-tune of a
BERT-style encoder does not: its position and token-type embeddings are looked up with one index
shared by the whole batch, so Opacus sees a batch of 1 there and cannot clip per example.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from sqlalchemy import Engine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from inhouse.config import TextTrainOptions
from inhouse.data import DatasetInfo
from inhouse.data.text_import import TextRows
from inhouse.errors import ConfigError
from inhouse.kinds.text.epochs import set_learning_rate, shard
from inhouse.training.private_run import PrivateRun, reserve

PROBE_TEXTS = ("a", "b c d")  # public: no row of any data set is read by the layer check
NO_SCALING = "none: text is tokenised, no statistic of the rows is used"


def per_sample_problems(model: nn.Module, tokenizer: Any, *, max_length: int) -> list[str]:
    """Why Opacus cannot train ``model``'s trainable layers privately; empty when it can.

    Runs on a copy: Opacus's validator, then one backward of :data:`PROBE_TEXTS` through
    ``GradSampleModule``, checking every trainable parameter's per-sample gradients.
    """
    from opacus.grad_sample import GradSampleModule
    from opacus.validators import ModuleValidator

    from inhouse.models.text import encode_texts

    probe = copy.deepcopy(model).cpu().train()  # Opacus only traces modules in training mode
    problems = [str(error) for error in ModuleValidator.validate(probe, strict=False)]
    if problems:
        return problems
    try:
        wrapped = GradSampleModule(probe, batch_first=True, loss_reduction="sum")
    except (NotImplementedError, ValueError) as exc:
        return [str(exc)]
    ids, mask = encode_texts(tokenizer, list(PROBE_TEXTS), max_length=max_length)
    wrapped(ids, mask).float().sum().backward()
    bad: dict[str, str] = {}
    for name, param in probe.named_parameters():
        if not param.requires_grad:
            continue
        layer = name.rpartition(".")[0]
        samples = getattr(param, "grad_sample", None)
        if param.grad is None:
            continue  # unused by the forward pass: nothing to clip
        if not isinstance(samples, torch.Tensor):
            bad.setdefault(layer, "no per-sample gradient")
        elif samples.shape[0] != len(PROBE_TEXTS):
            bad.setdefault(layer, f"batch {samples.shape[0]} instead of {len(PROBE_TEXTS)}")
        elif not torch.allclose(samples.sum(0), param.grad, rtol=1e-4, atol=1e-6):
            bad.setdefault(layer, "per-sample gradients do not sum to the gradient")
    wrapped._close()
    return [f"{layer} ({why})" for layer, why in bad.items()]


def check_private(model: nn.Module, tokenizer: Any, options: TextTrainOptions) -> None:
    """Refuse ``--dp`` (ConfigError, naming the layers) where Opacus cannot clip per example."""
    problems = per_sample_problems(model, tokenizer, max_length=options.max_length)
    if problems:
        more = f"; and {len(problems) - 6} more" if len(problems) > 6 else ""
        shown = "; ".join(problems[:6]) + more
        raise ConfigError(
            f"--dp is not available for --method {options.method} on this model: Opacus cannot "
            f"compute per-example gradients of {shown}. Train privately with --method head or "
            "--method lora (their trainable layers pass), against a registered --base"
        )


def dp_train_rows(options: TextTrainOptions, train_rows: int) -> int:
    """Rows a DP run samples from: the seeded subsample when ``--train-limit`` is smaller."""
    return min(train_rows, options.train_limit or train_rows)


def prepare_text(
    *, engine: Engine, options: TextTrainOptions, info: DatasetInfo, run_name: str
) -> PrivateRun:
    """Reserve a DP text run in the ledger, or check a non-DP one may read this data set."""
    from inhouse.privacy import PrivacyLedger

    if not options.dp:
        PrivacyLedger(engine).check_non_dp(
            dataset=options.dataset, model=options.model, run=run_name
        )
        return PrivateRun(plan=None)
    plan, charge_id = reserve(
        engine=engine,
        request=options,
        info=info,
        run_name=run_name,
        train_rows=dp_train_rows(options, info.train_rows),
        batch_size=options.batch_size * options.num_workers,
    )
    return PrivateRun(plan=plan, charge_id=charge_id, bounds_source=NO_SCALING)


def row_dataset(rows: TextRows, options: TextTrainOptions) -> TensorDataset:
    """The training rows' indices (the seeded subsample, if any): Opacus's Poisson sampler draws
    batches of these, and the worker tokenises the texts they point at."""
    indices = sorted(shard(rows, options=options, epoch=0, rank=0, world=1))
    return TensorDataset(torch.tensor(indices, dtype=torch.long))


def train_epoch_private(
    model: nn.Module,
    tokenizer: Any,
    rows: TextRows,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader[tuple[torch.Tensor, ...]],
    *,
    options: TextTrainOptions,
    epoch: int,
    device: torch.device,
) -> dict[str, Any]:
    """One DP epoch over Opacus's Poisson batches of row indices (full precision: Opacus's
    per-sample clipping and a loss scaler do not mix). Returns loss sum, correct and seen."""
    from inhouse.models.text import encode_texts

    steps = len(loader)
    total = steps * options.epochs
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for step, (batch,) in enumerate(loader):
        set_learning_rate(optimizer, options, done=epoch * steps + step, total=total)
        index = [int(i) for i in batch]
        # An empty Poisson batch still takes its (noise-only) step; BERT cannot run on zero
        # rows, so a public stand-in runs with a zero loss: its per-example gradient is 0.
        texts = [rows.texts[i] for i in index] or [PROBE_TEXTS[0]]
        ids, mask = encode_texts(tokenizer, texts, max_length=options.max_length)
        logits = model(ids.to(device), mask.to(device)).float()
        labels = torch.tensor([rows.labels[i] for i in index], dtype=torch.long, device=device)
        loss = F.cross_entropy(logits, labels) if index else logits.sum() * 0.0
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if index:
            loss_sum += float(loss.detach()) * len(index)
            correct += int((logits.argmax(dim=-1) == labels).sum())
            seen += len(index)
    return {"loss_sum": loss_sum, "correct": correct, "seen": seen, "amp": "off"}
