"""``inhouse privacy audit``: attack a registered version and set the result beside its epsilon.

Members are the training rows its lineage names (``lineage["dataset"]``, train split up to
``lineage["rows"]["up_to_id"]``), non-members the data set's fixed test split (never trained
on). The theoretical epsilon comes from ``lineage["privacy"]`` (None for a non-DP version).
For a DP version the same attacks are run on a non-DP reference, to show what DP bought: the
newest non-DP float version of the same model on the same data set, or, if there is none, a
non-DP model trained here with the same spec, rows and epochs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from sqlalchemy import Engine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from inhouse.data import Rows, read_rows
from inhouse.errors import InvalidInputError
from inhouse.kinds import build_model, load_module
from inhouse.membership.attack import AttackResult, dp_bounds, membership_inference
from inhouse.models import Standardize
from inhouse.registry import ModelVersion, Registry
from inhouse.training import train_one_epoch

Progress = Callable[[int, int], None]
"""Called as ``progress(epochs_done, epochs_total)`` while a reference model trains."""

# What inhouse.jobs.train uses when a lineage records no training config.
DEFAULT_TRAINING = {"epochs": 5, "batch_size": 32, "lr": 3e-3, "seed": 0}

__all__ = ["AuditReport", "Reference", "audit_version", "privacy_of", "train_reference"]


@dataclass(frozen=True)
class Reference:
    """The non-DP model the audited DP version is compared with."""

    source: str  # "registry" or "trained"
    version: int | None
    attack: AttackResult
    train_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "version": self.version,
            "attack": self.attack.to_dict(),
            "train_seconds": self.train_seconds,
        }


@dataclass(frozen=True)
class AuditReport:
    """One version's attack results next to its theoretical (epsilon, delta)."""

    model: str
    version: int
    dataset: str
    epsilon: float | None
    delta: float | None
    accountant: str | None
    attack: AttackResult
    reference: Reference | None
    bound_auc: float | None  # the most any attack can reach at (epsilon, delta)
    bound_tpr_at_1pct_fpr: float | None

    @property
    def dp(self) -> bool:
        return self.epsilon is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "dataset": self.dataset,
            "dp": self.dp,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "accountant": self.accountant,
            "attack": self.attack.to_dict(),
            "bound_auc": self.bound_auc,
            "bound_tpr_at_1pct_fpr": self.bound_tpr_at_1pct_fpr,
            "reference": self.reference.to_dict() if self.reference else None,
        }


def _rows(engine: Engine, info: ModelVersion) -> tuple[str, Rows, Rows]:
    dataset = info.lineage.get("dataset")
    up_to_id = (info.lineage.get("rows") or {}).get("up_to_id")
    if not dataset or up_to_id is None:
        raise InvalidInputError(
            f"{info.model} v{info.version} names no data set and row range in its lineage: "
            "its members are unknown, so it cannot be audited"
        )
    members = read_rows(engine, str(dataset), split="train", up_to_id=int(up_to_id))
    non_members = read_rows(engine, str(dataset), split="test")
    return str(dataset), members, non_members


def _attack(module: nn.Module, members: Rows, non_members: Rows, seed: int) -> AttackResult:
    return membership_inference(
        module, (members.x, members.y), (non_members.x, non_members.y), seed=seed
    )


def privacy_of(lineage: dict[str, Any]) -> dict[str, Any] | None:
    """A version's DP facts (``lineage["privacy"]`` with an epsilon), or None if non-DP.

    Non-DP runs may carry ``{"dp": False}`` there.
    """
    privacy = lineage.get("privacy")
    if isinstance(privacy, dict) and privacy.get("dp", True) and privacy.get("epsilon") is not None:
        return privacy
    return None


def _non_dp_version(registry: Registry, info: ModelVersion, dataset: str) -> ModelVersion | None:
    for candidate in reversed(registry.versions(info.model)):
        if (
            candidate.version != info.version
            and candidate.format == "safetensors"  # not a compressed child of a DP parent
            and privacy_of(candidate.lineage) is None
            and candidate.lineage.get("dataset") == dataset
            and (candidate.lineage.get("rows") or {}).get("up_to_id") is not None
        ):
            return candidate
    return None


def train_reference(
    spec: dict[str, Any],
    members: Rows,
    *,
    config: dict[str, Any],
    progress: Progress | None = None,
) -> nn.Module:
    """A non-DP model with ``spec``, trained on ``members`` with the epochs, batch size and
    learning rate of ``config`` (a version's ``lineage["config"]``; the train job's defaults)."""
    settings = DEFAULT_TRAINING | {k: config[k] for k in DEFAULT_TRAINING if k in config}
    if config.get("optimizer", "adam") != "adam":  # a DP recipe's SGD rate is no Adam rate
        settings["lr"] = DEFAULT_TRAINING["lr"]
    torch.manual_seed(int(settings["seed"]))
    module = build_model(spec)
    first = next(iter(module.children()), None)
    if isinstance(first, Standardize):
        first.fit(members.x)
    optimizer = torch.optim.Adam(module.parameters(), lr=float(settings["lr"]))
    loader = DataLoader(
        TensorDataset(members.x, members.y),
        batch_size=int(settings["batch_size"]),
        shuffle=True,
        generator=torch.Generator().manual_seed(int(settings["seed"])),
    )
    epochs = int(settings["epochs"])
    for epoch in range(epochs):
        train_one_epoch(module, loader, optimizer)
        if progress is not None:
            progress(epoch + 1, epochs)
    return module.eval()


def audit_version(
    *,
    registry: Registry,
    engine: Engine,
    model: str,
    ref: str = "champion",
    seed: int = 0,
    progress: Progress | None = None,
) -> AuditReport:
    """Run the membership-inference attacks on version ``ref`` of ``model``.

    Raises:
        ModelNotFoundError: no such version.
        InvalidInputError: its lineage names no rows, or too few rows to attack.
    """
    info = registry.get(model, ref)
    dataset, members, non_members = _rows(engine, info)
    attack = _attack(load_module(registry, info), members, non_members, seed)
    privacy = privacy_of(info.lineage)
    if privacy is None:
        return AuditReport(model, info.version, dataset, None, None, None, attack, None, None, None)
    epsilon, delta = float(privacy["epsilon"]), float(privacy["delta"])
    bound_auc, bound_tpr = dp_bounds(epsilon, delta)
    other = _non_dp_version(registry, info, dataset)
    if other is not None:
        _, other_members, _ = _rows(engine, other)
        reference = Reference(
            "registry",
            other.version,
            _attack(load_module(registry, other), other_members, non_members, seed),
        )
    else:
        started = time.perf_counter()
        module = train_reference(
            info.spec, members, config=info.lineage.get("config") or {}, progress=progress
        )
        seconds = time.perf_counter() - started
        reference = Reference("trained", None, _attack(module, members, non_members, seed), seconds)
    return AuditReport(
        model,
        info.version,
        dataset,
        epsilon,
        delta,
        privacy.get("accountant"),
        attack,
        reference,
        bound_auc,
        bound_tpr,
    )
