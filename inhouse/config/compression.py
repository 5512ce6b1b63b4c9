"""Typed settings of a compression run and of the gate that decides whether it may serve."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from inhouse.config.parse import parse_model

Runtime = Literal["auto", "weight_only", "dynamic"]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Any:
        """Validate ``data``; a bad field raises ConfigError naming the field and the rule."""
        return parse_model(cls, data, label=f"{cls.__name__}.", show_input=True)


class CompressionSettings(_Settings):
    """How to prune, fine-tune and quantize a model.

    The defaults reach the Digits and MNIST targets (>= 10x smaller, <= 0.5 points lost): 90%
    global magnitude pruning in 3 steps on a cubic schedule, a fine-tune after each (8 epochs,
    at most 2,000 steps: Digits' 1,437 rows get every epoch, MNIST's 60,000 about one), then
    int8.
    """

    prune_amount: float = Field(
        default=0.9, ge=0.0, le=0.99, description="fraction of Linear weights (or rows) set to zero"
    )
    structured: bool = Field(
        default=False, description="prune whole output rows (neurons) per layer instead of weights"
    )
    structured_norm: int = Field(
        default=2, ge=1, description="L-n norm that ranks rows when structured"
    )
    prune_steps: int = Field(
        default=3,
        ge=1,
        le=20,
        description="pruning steps (cubic schedule), each followed by fine-tuning",
    )
    exclude: tuple[str, ...] = Field(
        default=(), description="module names (as in named_modules) never pruned nor quantized"
    )
    finetune_epochs: int = Field(
        default=8, ge=0, description="fine-tune epochs after each pruning step"
    )
    finetune_max_steps: int | None = Field(
        default=2_000,
        ge=1,
        description="optimizer steps per fine-tune at most (None: finetune_epochs in full); "
        "on a large data set a fraction of one epoch recovers the pruned accuracy",
    )
    lr: float = Field(default=1e-3, gt=0.0, le=1.0, description="fine-tune learning rate (Adam)")
    batch_size: int = Field(default=32, ge=1, description="fine-tune batch size")
    seed: int = Field(default=0, description="seed of the fine-tune shuffling")
    quantize: Literal["none", "int8"] = Field(
        default="int8", description="Linear weight quantization"
    )
    per_channel: bool = Field(
        default=True, description="one int8 scale per output row, not per tensor"
    )
    quantize_embeddings: bool = Field(
        default=False,
        description="also store nn.Embedding tables as int8 rows (half of BERT's weights)",
    )
    runtime: Runtime = Field(
        default="auto",
        description=(
            "int8 Linear kernel: weight_only (dequantized float32), dynamic (fbgemm int8), "
            "or auto: dynamic from dynamic_min_weights weights up"
        ),
    )
    smooth_alphas: tuple[Annotated[float, Field(ge=0.0, le=1.0)], ...] = Field(
        default=(0.5, 0.75, 0.9),
        max_length=8,
        description="SmoothQuant strengths tried per dynamic int8 layer when calibration batches "
        "are given; each layer keeps the best or none (empty: never smooth)",
    )
    dynamic_min_weights: int = Field(
        default=32_768,
        ge=1,
        description="auto runtime: smallest in*out that runs the dynamic kernel",
    )
    float16_storage: bool = Field(
        default=True,
        description="round the remaining float tensors (biases, norms, buffers) to float16 "
        "precision so they are stored in 2 bytes; the round trip stays exact",
    )


class GateSettings(_Settings):
    """Limits a compressed model must meet, against its parent, to be served."""

    max_accuracy_drop_points: float = Field(
        default=0.5,
        ge=0.0,
        le=100.0,
        description="parent accuracy - compressed accuracy, in points",
    )
    max_perplexity_increase: float = Field(
        default=0.05,
        ge=-1.0,
        description="generative models: held-out perplexity of the copy / the parent's - 1 "
        "must be at most this (0.05: +5%)",
    )
    min_size_ratio: float | None = Field(
        default=None, gt=0.0, description="parent bytes / compressed bytes must be at least this"
    )
    max_latency_ratio: float | None = Field(
        default=None,
        gt=0.0,
        description="compressed / parent latency at batch 1, 1 thread must be at most this",
    )
