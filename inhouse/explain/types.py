"""Options, limits and the result type shared by every explanation method.

``ExplainOptions`` is what a caller may choose (method, steps, samples, batching). ``ExplainLimits``
is what the operator allows; it is a separate object on purpose, so that a request body parsed into
``ExplainOptions`` can never raise its own limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from inhouse.errors import InvalidInputError, PayloadTooLargeError

Method = Literal["ig", "lime", "shap"]
BaselineKind = Literal["zeros", "mean"]
FloatArray = npt.NDArray[np.float64]

METHOD_NAMES: dict[str, str] = {
    "ig": "IntegratedGradients",
    "lime": "Lime",
    "shap": "KernelShap",
    "layer_ig": "LayerIntegratedGradients",
}


class ExplainOptions(BaseModel):
    """What a caller may choose for one explanation request.

    Attributes:
        method: ``ig`` (Integrated Gradients), ``lime`` or ``shap`` (KernelSHAP).
        n_steps: points on the Integrated Gradients path.
        n_samples: perturbations evaluated per instance by LIME and KernelSHAP.
        perturbations_per_eval: perturbations stacked into one forward pass (LIME/SHAP).
        internal_batch_size: rows per forward pass on the IG path; ``None`` means the whole
            path of every instance in one pass (capped by the operator's limit).
        baseline: ``zeros``, or ``mean`` of a background sample given to ``explain``.
        seed: seeds the LIME/SHAP sampling (the global RNG is left untouched); ``None``: unseeded.
        patch_size: LIME/SHAP on an image: side of the square pixel patches switched together;
            ``None``: the smallest leaving at most 64 patches (28x28: 4), 1: single pixels.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Method = "ig"
    n_steps: int = Field(default=50, ge=2)
    n_samples: int = Field(default=200, ge=2)
    perturbations_per_eval: int = Field(default=64, ge=1)
    internal_batch_size: int | None = Field(default=None, ge=1)
    baseline: BaselineKind = "zeros"
    seed: int | None = 0
    patch_size: int | None = Field(default=None, ge=1)


class ExplainLimits(BaseModel):
    """What the operator allows per request; anything over raises ``PayloadTooLargeError``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_instances: int = Field(default=64, ge=1)
    max_features: int = Field(default=65_536, ge=1)
    max_n_steps: int = Field(default=1_000, ge=2)
    max_n_samples: int = Field(default=5_000, ge=2)
    max_perturbations_per_eval: int = Field(default=1_024, ge=1)
    max_internal_batch_size: int = Field(default=16_384, ge=2)
    max_model_rows: int = Field(default=200_000, ge=1)
    max_tokens: int = Field(default=512, ge=1)

    def check(
        self,
        *,
        n_instances: int,
        n_features: int,
        method: str,
        n_steps: int = 0,
        n_samples: int = 0,
        perturbations_per_eval: int = 0,
    ) -> None:
        """Raise ``PayloadTooLargeError`` naming the first value over its limit."""
        pairs = [
            ("instances", n_instances, self.max_instances),
            ("features per instance", n_features, self.max_features),
        ]
        if method in ("ig", "layer_ig"):
            pairs.append(("n_steps", n_steps, self.max_n_steps))
            rows = n_instances * n_steps
        else:
            pairs.append(("n_samples", n_samples, self.max_n_samples))
            pairs.append(
                ("perturbations_per_eval", perturbations_per_eval, self.max_perturbations_per_eval)
            )
            rows = n_instances * n_samples
        pairs.append(("model rows (instances x steps or samples)", rows, self.max_model_rows))
        for name, value, limit in pairs:
            if value > limit:
                raise PayloadTooLargeError(f"too many {name}: {value} > limit {limit}")


@dataclass(frozen=True)
class Explanation:
    """Attributions of a batch of instances, with what is needed to judge them.

    Attributes:
        method: ``ig``, ``lime``, ``shap`` or ``layer_ig``.
        attributions: (instances, features) attribution of each input feature to the target output.
        feature_names: one name per feature (column of ``attributions``).
        input_shape: shape of one instance as the model sees it (e.g. ``(64,)`` or ``(1, 8, 8)``).
        baseline: (instances, features) reference input (token ids for text).
        baseline_kind: ``zeros``, ``mean``, ``custom`` or ``pad`` (text).
        targets: explained output index per instance.
        predictions: argmax output per instance.
        probabilities: (instances, classes) softmax of the logits; ``None`` for one-output models.
        target_outputs: model output at the target for each instance, f(x).
        baseline_outputs: model output at the target for each baseline, f(baseline).
        delta: sum(attributions) - (f(x) - f(baseline)) per instance: the completeness
            (convergence) delta for IG, the additivity gap for LIME/SHAP.
        metadata: method name, parameters, library versions, ``runtime_ms``.
        tokens: per-instance token strings for text (only attended positions), else ``None``.
        image: ``(height, width)`` of an image's row-major pixels (attributions reshape to a
            heat map), else ``None``.
    """

    method: str
    attributions: FloatArray
    feature_names: list[str]
    input_shape: tuple[int, ...]
    baseline: FloatArray
    baseline_kind: str
    targets: list[int]
    predictions: list[int]
    probabilities: FloatArray | None
    target_outputs: FloatArray
    baseline_outputs: FloatArray
    delta: FloatArray
    metadata: dict[str, Any] = field(default_factory=dict)
    tokens: list[list[str]] | None = None
    image: tuple[int, int] | None = None

    @property
    def n_instances(self) -> int:
        """Number of explained instances."""
        return int(self.attributions.shape[0])

    def feature_names_of(self, instance: int = 0) -> list[str]:
        """Names of the features of one instance (its tokens for text)."""
        if self.tokens is not None:
            return list(self.tokens[instance])
        return list(self.feature_names)

    def attributions_of(self, instance: int = 0) -> FloatArray:
        """Attributions of one instance, aligned with ``feature_names_of(instance)``."""
        row: FloatArray = self.attributions[instance]
        if self.tokens is not None:
            return row[: len(self.tokens[instance])]
        return row

    def heatmap(self, instance: int = 0) -> FloatArray:
        """One instance's attributions as its (height, width) image; needs ``image``."""
        if self.image is None:
            raise InvalidInputError("this explanation is not of an image: it has no heat map")
        result: FloatArray = self.attributions[instance].reshape(self.image)
        return result

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists and plain numbers only)."""
        return {
            "method": self.method,
            "attributions": self.attributions.tolist(),
            "feature_names": list(self.feature_names),
            "input_shape": list(self.input_shape),
            "baseline": self.baseline.tolist(),
            "baseline_kind": self.baseline_kind,
            "targets": list(self.targets),
            "predictions": list(self.predictions),
            "probabilities": None if self.probabilities is None else self.probabilities.tolist(),
            "target_outputs": self.target_outputs.tolist(),
            "baseline_outputs": self.baseline_outputs.tolist(),
            "delta": self.delta.tolist(),
            "metadata": dict(self.metadata),
            "tokens": None if self.tokens is None else [list(t) for t in self.tokens],
            "image": None if self.image is None else list(self.image),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Explanation:
        """Rebuild an explanation from ``to_dict`` output."""
        probs = data.get("probabilities")
        tokens = data.get("tokens")
        image = data.get("image")
        return cls(
            method=str(data["method"]),
            attributions=np.asarray(data["attributions"], dtype=np.float64),
            feature_names=[str(n) for n in data["feature_names"]],
            input_shape=tuple(int(s) for s in data["input_shape"]),
            baseline=np.asarray(data["baseline"], dtype=np.float64),
            baseline_kind=str(data["baseline_kind"]),
            targets=[int(t) for t in data["targets"]],
            predictions=[int(p) for p in data["predictions"]],
            probabilities=None if probs is None else np.asarray(probs, dtype=np.float64),
            target_outputs=np.asarray(data["target_outputs"], dtype=np.float64),
            baseline_outputs=np.asarray(data["baseline_outputs"], dtype=np.float64),
            delta=np.asarray(data["delta"], dtype=np.float64),
            metadata=dict(data.get("metadata", {})),
            tokens=None if tokens is None else [[str(t) for t in row] for row in tokens],
            image=None if image is None else (int(image[0]), int(image[1])),
        )
