"""The privacy ledger's say on a compression, and the privacy its result may claim.

Of everything compression does, only the fine-tune after each pruning step reads training
rows: it trains the copy on the parent's rows with Adam, without clipping or noise. Magnitude
pruning, int8 rounding and float16 storage are computed from the weights alone, so they are
post-processing: the compressed copy keeps exactly the parent's guarantee. Hence:

- **no fine-tune** (``prune_amount == 0`` or ``finetune_epochs == 0``): no training row is
  read, nothing is charged, and the child's lineage carries the parent's ``privacy`` as is;
- **a fine-tune of a DP parent** is refused: it would make a model with no guarantee out of
  one the ledger paid for (there is no DP fine-tune of a pruned model yet), so the user is
  told to compress without one;
- **a fine-tune of a non-DP parent** is a non-DP training run: the ledger admits it exactly
  as it admits non-DP training (:meth:`~inhouse.privacy.PrivacyLedger.check_non_dp`: refused
  on a budgeted data set without an admin's exemption, recorded with it) before a row is read,
  and the child's lineage says ``dp: false`` and names that run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

from inhouse.config import CompressionSettings
from inhouse.errors import InvalidInputError


def finetunes_on_rows(settings: CompressionSettings) -> bool:
    """Whether compressing with ``settings`` trains on training rows (pruning + fine-tune)."""
    return settings.prune_amount > 0 and settings.finetune_epochs > 0


def flags_finetune(*, prune_amount: float | None, finetune_epochs: int | None) -> bool:
    """:func:`finetunes_on_rows` for command-line flags, where ``None`` means the default."""
    defaults = CompressionSettings()
    prune = defaults.prune_amount if prune_amount is None else prune_amount
    epochs = defaults.finetune_epochs if finetune_epochs is None else finetune_epochs
    return prune > 0 and epochs > 0


def parent_privacy(lineage: Mapping[str, Any]) -> dict[str, Any]:
    """The parent's privacy lineage; a version that records none claims no guarantee."""
    privacy = lineage.get("privacy")
    return dict(privacy) if isinstance(privacy, Mapping) else {"dp": False}


def compression_run_name(model: str, version: int) -> str:
    """The run name a fine-tuning compression is recorded under in the ledger."""
    return f"compress-{model}-v{version}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def admit_compression(
    *,
    engine: Engine,
    model: str,
    version: int,
    lineage: Mapping[str, Any],
    dataset: str,
    settings: CompressionSettings,
    run: str,
) -> dict[str, Any]:
    """Let a compression of ``model`` v``version`` read its training rows, or refuse it.

    Call it before any training row is read.

    Returns:
        The ``privacy`` lineage the compressed version may claim: the parent's when no row
        is read (post-processing); after a fine-tune on the rows ``{"dp": False}`` and the
        ``run`` the ledger's non-DP run record names.

    Raises:
        InvalidInputError: a fine-tune of a differentially private parent (says which flags
            compress it without one).
        PermissionDeniedError: a fine-tune on a budgeted data set that has no admin's
            exemption for non-DP training.
    """
    privacy = parent_privacy(lineage)
    if not finetunes_on_rows(settings):
        return privacy
    if privacy.get("dp"):
        epsilon = privacy.get("epsilon")
        paid = f" (ε={epsilon:.2f})" if isinstance(epsilon, (int, float)) else ""
        raise InvalidInputError(
            f"{model} v{version} is differentially private{paid}: a fine-tune after pruning "
            f"would train it on the rows of {dataset!r} without noise, which no ledger charge "
            "covers; compress it with --finetune-epochs 0 (magnitude pruning only) or "
            "--prune 0 (int8 only)"
        )
    from inhouse.privacy import PrivacyLedger

    PrivacyLedger(engine).check_non_dp(dataset=dataset, model=model, run=run)
    return {"dp": False, "run": run}
