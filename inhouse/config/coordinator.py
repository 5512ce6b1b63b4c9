"""Per-model settings of the coordinator: triggers, incremental retraining, the gate, backoff.

Stored as JSON with the model's coordinator state, so a restarted actor runs under exactly the
settings it was started with. ``inhouse coordinator start`` fills them from its flags.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from inhouse.config.dp import DPSettings
from inhouse.config.parse import Loc, parse_model


def _how_to_set(loc: Loc) -> str:
    return "set --" + (".".join(str(part) for part in loc) or "(root)").replace("_", "-")


class CoordinatorSettings(DPSettings):
    """How one model is kept up to date from its data stream (DP retrains: the DP fields)."""

    model_config = ConfigDict(frozen=True)

    model: str = Field(description="Registry model kept up to date.")
    dataset: str = Field("digits", description="Data set (SQL table) streamed from.")
    poll_s: float = Field(2.0, gt=0, le=3600, description="Seconds between stream polls.")
    # --- triggers
    min_rows: int | None = Field(
        200, ge=1, description="Retrain once this many new training rows arrived (None: off)."
    )
    interval_s: float | None = Field(
        None, gt=0, description="Retrain at most this long after the last one (None: off)."
    )
    cron: str | None = Field(None, description="Cron expression of scheduled retrains.")
    drift_threshold: float | None = Field(
        None, gt=0, description="Retrain when the largest per-feature drift exceeds this."
    )
    drift_test: Literal["psi", "ks"] = Field("psi", description="Drift statistic per feature.")
    drift_min_rows: int = Field(
        50, ge=5, description="New rows needed before drift is measured at all."
    )
    drift_reference_rows: int = Field(
        2000, ge=10, description="Most training rows (latest first) drift is measured against."
    )
    # --- incremental retraining
    epochs: int = Field(8, ge=1, le=1000, description="Epochs over new rows + replay sample.")
    lr: float = Field(3e-3, gt=0, le=10, description="Adam learning rate of the warm start.")
    batch_size: int = Field(128, ge=1, le=65_536, description="Rows per step of the retrain.")
    replay_ratio: float = Field(
        4.0, ge=0, le=100, description="Older rows replayed per new row (against forgetting)."
    )
    trainable_layers: int | None = Field(
        None, ge=1, description="Train only the last N Linear layers (None: all)."
    )
    text_method: Literal["lora", "head"] = Field(
        "lora", description="Text models: a retrain updates LoRA adapters + head, or the head."
    )
    compress: bool = Field(True, description="Compress the candidate like the champion was.")
    seed: int = 0
    threads: int = Field(1, ge=1, le=256, description="torch threads of an in-process retrain.")
    # --- gate
    max_accuracy_drop: float = Field(
        0.5, ge=0, le=100, description="Gate: accuracy points the candidate may lose."
    )
    max_latency_ratio: float = Field(
        3.0, gt=0, description="Gate: candidate / champion latency allowed (noisy on 2 cores)."
    )
    min_importance_spearman: float = Field(
        0.5, ge=-1, le=1, description="Gate: below this rank correlation, flag for review."
    )
    # --- canary promotion
    canary_share: float = Field(
        0.1, ge=0, le=1, description="Share of requests the candidate serves first (0: none)."
    )
    canary_window_s: float = Field(
        30.0, gt=0, le=86_400, description="Seconds the canary is watched before promotion."
    )
    canary_min_requests: int = Field(
        20, ge=1, description="Canary requests needed before its error rate or latency counts."
    )
    canary_max_error_rate: float = Field(
        0.01, ge=0, le=1, description="Canary: roll back above this share of failed requests."
    )
    canary_max_latency_ratio: float = Field(
        2.0, gt=0, description="Canary: roll back when its p95 is this many times the champion's."
    )
    canary_min_feedback_rows: int = Field(
        20, ge=1, description="New labelled rows needed to compare canary accuracy."
    )
    canary_max_accuracy_drop: float = Field(
        2.0, ge=0, le=100, description="Canary: accuracy points it may lose on new labelled rows."
    )
    # --- failures
    backoff_base_s: float = Field(10.0, gt=0, description="First wait after a failed retrain.")
    backoff_max_s: float = Field(900.0, gt=0, description="Longest wait after failures.")
    max_dp_failures: int = Field(
        3, ge=1, description="Stop after this many DP retrains failed in a row (each spends)."
    )

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (e.g. '0 * * * *')")
        return value

    @classmethod
    def parse(cls, data: dict[str, Any]) -> CoordinatorSettings:
        """Validate ``data``; a bad field raises ConfigError naming the field and the flag."""
        return parse_model(cls, data, label="coordinator.", show_input=True, hint=_how_to_set)
