"""The settings of one hyperparameter search (``inhouse tune``, ``jobs/tune.py``): the space,
the ASHA scheduler and the trial budget."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class TuneSettings(BaseModel):
    """One hyperparameter search: the space, the ASHA scheduler, the trial budget."""

    model_config = ConfigDict(extra="forbid")

    num_trials: int = Field(4, ge=1, le=10_000, description="Configurations sampled and tried.")
    max_concurrent_trials: int = Field(2, ge=1, description="Trials running at once.")
    max_epochs: int = Field(5, ge=1, le=10_000, description="Epochs of a trial ASHA lets finish.")
    grace_period: int = Field(1, ge=1, description="ASHA: epochs every trial runs first.")
    reduction_factor: int = Field(2, ge=2, description="ASHA: keep 1/this of trials per rung.")
    workers_per_trial: int = Field(1, ge=1, description="Ray Train workers of each trial.")
    lr_min: float = Field(1e-4, gt=0, le=10, description="Learning rate, log-uniform from.")
    lr_max: float = Field(1e-2, gt=0, le=10, description="Learning rate, log-uniform to.")
    hidden_choices: list[str] = Field(
        default_factory=lambda: ["64,64", "128,64", "128"],
        description="Hidden layer sizes to choose from, each comma-separated (e.g. 128,64).",
    )
    batch_sizes: list[int] = Field(
        default_factory=lambda: [16, 32, 64], description="Per-worker batch sizes to choose from."
    )
    search_seed: int = Field(0, description="Seed of the search's sampling.")

    @field_validator("hidden_choices")
    @classmethod
    def _layers(cls, choices: list[str]) -> list[str]:
        if not choices:
            raise ValueError("give at least one hidden layer choice, e.g. 64,64")
        for choice in choices:
            sizes = [part.strip() for part in choice.split(",")]
            if not all(size.isdigit() and 0 < int(size) <= 65_536 for size in sizes):
                raise ValueError(f"{choice!r} is not comma-separated layer sizes like 128,64")
        return choices

    @field_validator("batch_sizes")
    @classmethod
    def _batches(cls, sizes: list[int]) -> list[int]:
        if not sizes or any(size < 1 or size > 65_536 for size in sizes):
            raise ValueError("batch sizes must be between 1 and 65536")
        return sizes

    @model_validator(mode="after")
    def _ranges(self) -> TuneSettings:
        if self.lr_min > self.lr_max:
            raise ValueError(f"lr_min ({self.lr_min}) is above lr_max ({self.lr_max})")
        if self.grace_period > self.max_epochs:
            raise ValueError(
                f"grace_period ({self.grace_period}) is above max_epochs ({self.max_epochs})"
            )
        return self

    def hidden_layers(self) -> list[list[int]]:
        """The hidden layer choices as lists of sizes."""
        return [[int(size) for size in choice.split(",")] for choice in self.hidden_choices]

    def space(self) -> dict[str, Any]:
        """The search space as plain data (what the lineage records)."""
        return {
            "lr": {"loguniform": [self.lr_min, self.lr_max]},
            "hidden": {"choice": self.hidden_layers()},
            "batch_size": {"choice": self.batch_sizes},
        }
