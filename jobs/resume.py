"""How a Ray Train worker resumes: the checkpoint Ray hands it, opened as the run and epoch
Ray recorded for it.

A checkpoint is opened with the run's own name and the epoch rank 0 reported with it, as Ray
Train's controller recorded that report (not as any file in the checkpoint says), so with a key
ring a checkpoint of another run or epoch, or one whose files were replaced, does not load
(``docs/security.md``, encryption at rest). Both training jobs' workers call :func:`resume`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray.train
import torch

from inhouse.crypto import KeyRing
from inhouse.errors import IntegrityError
from inhouse.training import load_checkpoint

RECORD_TIMEOUT_S = 60.0


def recorded_epoch(checkpoint: ray.train.Checkpoint) -> int:
    """The epoch rank 0 reported with ``checkpoint``, from Ray Train's record of its reports."""
    for reported in ray.train.get_all_reported_checkpoints(timeout_s=RECORD_TIMEOUT_S):
        if reported.checkpoint.path == checkpoint.path:
            epoch = reported.metrics.get("epoch")
            if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0:
                return epoch
            break
    raise IntegrityError(
        f"Ray Train has no record of the epoch of checkpoint {checkpoint.path}; not resuming "
        "from it"
    )


def resume(
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    keyring: KeyRing | None,
    run_name: str,
) -> dict[str, Any] | None:
    """Restore the checkpoint Ray hands this worker (None on a fresh start); its ``state``."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    epoch = recorded_epoch(checkpoint)
    with checkpoint.as_directory() as directory:
        return load_checkpoint(
            Path(directory),
            model=model,
            optimizer=optimizer,
            keyring=keyring,
            artifact_id=run_name,
            epoch=epoch,
        )
