"""Framework-free training pieces shared by Ray Train jobs and the benchmarks."""

from inhouse.training.checkpoint import load_checkpoint, save_checkpoint, unwrap
from inhouse.training.loop import EpochStats, evaluate, train_one_epoch

__all__ = [
    "EpochStats",
    "evaluate",
    "load_checkpoint",
    "save_checkpoint",
    "train_one_epoch",
    "unwrap",
]
