"""The settings of training runs: the tabular MLP, text fine-tuning; both can be DP."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from inhouse.config.dp import DPSettings
from inhouse.config.parse import parse_model
from inhouse.flags import add_section_flags, section_overrides

Method = Literal["full", "head", "lora"]
Activation = Literal["relu", "tanh"]  # of the MLP's hidden layers (inhouse.models.mlp)
OptimizerName = Literal["adam", "sgd"]  # inhouse.training.recipe
ScheduleName = Literal["constant", "cosine"]
InitName = Literal["torch", "glorot"]  # inhouse.training.recipe
DEFAULT_LR = {"full": 5e-5, "head": 2e-3, "lora": 1e-3}


class TrainSettings(DPSettings):
    """One training run of the tabular MLP."""

    dataset: str = Field("digits", description="Data set (table) to train on.")
    model: str = Field("digits", description="Registry name of the trained model.")
    epochs: int = Field(5, ge=1, le=10_000)
    batch_size: int = Field(32, ge=1, le=65_536, description="Per worker.")
    lr: float = Field(3e-3, gt=0, le=10)
    hidden: list[int] = Field(default_factory=lambda: [64, 64])
    activation: Activation = Field(
        "relu", description="Hidden-layer activation of the MLP: relu or tanh (tanh suits DP-SGD)."
    )
    optimizer: OptimizerName = Field(
        "adam", description="adam, or sgd with Nesterov momentum (DP on many rows: sgd)."
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="Momentum of --optimizer sgd.")
    weight_decay: float = Field(
        0.0, ge=0, lt=1, description="L2 weight decay of the optimizer (0: none)."
    )
    init: InitName = Field(
        "torch",
        description="Initial weights: PyTorch's default, or glorot (Glorot-uniform weights, zero "
        "biases: Keras's default, the seed's example).",
    )
    lr_schedule: ScheduleName = Field(
        "constant",
        description="Learning rate per step: constant, or cosine (decays to 0 by the last step).",
    )
    builder: str | None = Field(
        None,
        description="Train your own module instead of the MLP: pkg.module:function "
        "(under models.allowed_builder_prefixes; needs code:admin).",
    )
    builder_kwargs: str | None = Field(None, description="The builder's kwargs as a JSON object.")
    num_workers: int = Field(2, ge=1, le=1024)
    use_gpu: bool = False
    seed: int = 0
    max_failures: int = Field(2, ge=0, description="Worker failures survived by resuming.")
    promote: bool = Field(True, description="Make the new version the champion.")
    compress: bool = Field(
        True, description="Also register a pruned+int8 version; serve it if it passes the gate."
    )
    dp_bounds: Path | None = Field(
        None, description="DP: JSON of public per-feature bounds {feature: [lo, hi]}."
    )


class TextTrainOptions(DPSettings):
    """What a text fine-tuning run does; every field is a ``--flag`` of the job."""

    dataset: str = Field(description="text data set to train on (inhouse data import)")
    model: str = Field(description="registry model name the result is registered under")
    model_dir: str | None = Field(None, description="local Hugging Face directory to start from")
    base: str | None = Field(None, description="registered text model to start from: NAME[:REF]")
    method: Method = Field("full", description="full fine-tune, head-only or lora adapter")
    epochs: int = Field(2, ge=1, le=100)
    batch_size: int = Field(32, ge=1, le=4096, description="examples per step per worker")
    lr: float | None = Field(None, gt=0, le=1, description="learning rate (default per method)")
    warmup: float = Field(0.1, ge=0, lt=1, description="share of steps with a rising rate")
    head_epochs: int = Field(
        0, ge=0, le=1000, description="first train the new head alone on frozen encoder features"
    )
    head_lr: float = Field(2e-3, gt=0, le=1, description="learning rate of the head warm-up")
    max_length: int = Field(64, ge=4, le=512, description="tokens per text")
    train_limit: int | None = Field(None, ge=1, description="train on a seeded subsample")
    probe_rows: int = Field(256, ge=1, description="test rows scored after each epoch")
    num_workers: int = Field(2, ge=1, le=256)
    cpus_per_worker: float = Field(1.0, gt=0)
    threads_per_worker: int = Field(1, ge=1, le=64)
    use_gpu: bool = Field(False, description="train on GPUs (mixed precision bf16/fp16)")
    mixed_precision: bool = Field(
        True, description="on GPUs: bf16 autocast (fp16 where bf16 is missing); no: fp32"
    )
    gradient_checkpointing: bool = Field(False, description="recompute activations: less memory")
    lora_r: int = Field(8, ge=1, le=256)
    lora_alpha: int = Field(16, ge=1)
    compress: bool = Field(True, description="also register the int8 version (full method)")
    quantize_embeddings: bool = Field(True, description="int8 embeddings too (smaller file)")
    max_accuracy_drop: float = Field(0.5, ge=0, description="gate for serving the int8 version")
    promote: bool = Field(True, description="point the champion alias at the result")
    seed: int = 0
    max_failures: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _one_start(self) -> TextTrainOptions:
        if (self.model_dir is None) == (self.base is None):
            raise ValueError("give exactly one of --model-dir and --base")
        if self.method != "full" and self.base is None:
            raise ValueError(
                f"--method {self.method} trains an adapter against a registered base: import the "
                "directory first (inhouse models import DIR --name NAME) and pass --base NAME"
            )
        if self.dp and self.head_epochs:
            # the warm-up fits the head on cached features without noise: not private
            raise ValueError("--head-epochs trains without noise; it cannot run with --dp")
        return self

    def learning_rate(self) -> float:
        """The learning rate given, or the method's default."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        add_section_flags(parser, cls)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TextTrainOptions:
        return parse_model(cls, section_overrides(args, cls), root="options")
