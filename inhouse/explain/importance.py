"""Global explanation: mean |SHAP| per feature over a background sample, and its comparison.

Computed when a model version is registered; ``GlobalImportance.to_dict`` is what goes into the
version's lineage, and ``compare_importance`` tells how much two versions disagree on what matters
(Spearman rank correlation and top-k overlap).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from inhouse.errors import InvalidInputError
from inhouse.explain._inputs import as_batch, model_device_dtype, to_tensor
from inhouse.explain.attribution import explain
from inhouse.explain.patches import ImageShape
from inhouse.explain.types import ExplainLimits, ExplainOptions, FloatArray


@dataclass(frozen=True)
class GlobalImportance:
    """Mean absolute KernelSHAP attribution of each feature over a background sample.

    Attributes:
        feature_names: one name per feature.
        importance: mean |SHAP| per feature, aligned with ``feature_names``.
        n_background: rows the mean was taken over.
        metadata: method, parameters, baseline, ``runtime_ms``.
        image: ``(height, width)`` when the features are an image's pixels, else ``None``.
    """

    feature_names: list[str]
    importance: FloatArray
    n_background: int
    metadata: dict[str, Any] = field(default_factory=dict)
    image: ImageShape | None = None

    def heatmap(self) -> FloatArray:
        """Mean |SHAP| per pixel as the (height, width) image; needs ``image``."""
        if self.image is None:
            raise InvalidInputError("this global importance is not of an image: no heat map")
        result: FloatArray = self.importance.reshape(self.image)
        return result

    def ranking(self) -> list[str]:
        """Feature names, most important first (ties keep feature order)."""
        order = np.argsort(-self.importance, kind="stable")
        return [self.feature_names[i] for i in order]

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` most important features with their mean |SHAP|."""
        order = np.argsort(-self.importance, kind="stable")[: max(k, 0)]
        return [(self.feature_names[i], float(self.importance[i])) for i in order]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, to store in a version's lineage (an image's has ``image``)."""
        data: dict[str, Any] = {
            "feature_names": list(self.feature_names),
            "importance": self.importance.tolist(),
            "n_background": self.n_background,
            "metadata": dict(self.metadata),
        }
        if self.image is not None:
            data["image"] = {"height": self.image[0], "width": self.image[1]}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GlobalImportance:
        """Rebuild from ``to_dict`` output."""
        image = data.get("image")
        return cls(
            feature_names=[str(n) for n in data["feature_names"]],
            importance=np.asarray(data["importance"], dtype=np.float64),
            n_background=int(data["n_background"]),
            metadata=dict(data.get("metadata", {})),
            image=None if image is None else (int(image["height"]), int(image["width"])),
        )


@dataclass(frozen=True)
class ImportanceComparison:
    """How two versions' global importances agree."""

    spearman: float
    top_k_overlap: float
    k: int
    top_old: list[str]
    top_new: list[str]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "spearman": self.spearman,
            "top_k_overlap": self.top_k_overlap,
            "k": self.k,
            "top_old": list(self.top_old),
            "top_new": list(self.top_new),
        }


def global_importance(
    model: nn.Module,
    background: Any,
    *,
    feature_names: Sequence[str] | None = None,
    target: int | None = None,
    n_samples: int = 200,
    perturbations_per_eval: int = 128,
    max_rows: int = 100,
    baseline: Any = None,
    seed: int = 0,
    limits: ExplainLimits | None = None,
    image: ImageShape | None = None,
) -> GlobalImportance:
    """Mean |KernelSHAP| per feature over (a seeded subsample of) ``background``.

    Each row is explained for ``target``, or for its predicted class when ``None``, against the
    mean of the whole background (or ``baseline`` when given).

    Args:
        model: module returning logits (rows, classes).
        background: representative rows, e.g. a sample of the training set.
        feature_names: one name per feature.
        target: output to explain for every row; ``None``: each row's predicted class.
        n_samples: KernelSHAP coalitions per row.
        perturbations_per_eval: coalitions evaluated per forward pass.
        max_rows: rows of ``background`` used at most (sampled without replacement).
        baseline: reference input; defaults to the background mean.
        seed: seeds the row subsample and the SHAP sampling.
        limits: operator limits; default allows ``max_rows`` instances.
        image: ``(height, width)`` of image pixels: SHAP over pixel patches, each patch's value
            shared among its pixels (:mod:`inhouse.explain.patches`), a (height, width) map.
    """
    if max_rows < 1:
        raise InvalidInputError(f"max_rows must be >= 1, got {max_rows}")
    device, dtype = model_device_dtype(model)
    rows = as_batch(to_tensor("background", background, device=device, dtype=dtype))
    full, n_total = rows, int(rows.shape[0])
    if n_total > max_rows:
        picked = np.random.default_rng(seed).choice(n_total, size=max_rows, replace=False)
        rows = rows[torch.as_tensor(np.sort(picked), device=device)]
    if limits is None:
        defaults = ExplainLimits()
        limits = ExplainLimits(
            max_instances=max_rows, max_model_rows=max_rows * defaults.max_n_samples
        )
    options = ExplainOptions(
        method="shap",
        n_samples=n_samples,
        perturbations_per_eval=perturbations_per_eval,
        baseline="mean",
        seed=seed,
    )
    result = explain(
        model,
        rows,
        target=target,
        feature_names=feature_names,
        baseline=baseline,
        background=full,
        options=options,
        limits=limits,
        image=image,
    )
    importance = np.abs(result.attributions).mean(axis=0)
    metadata = {
        "method": "mean_abs_kernel_shap",
        "target": "predicted_class" if target is None else int(target),
        "baseline_kind": result.baseline_kind,
        "n_samples": n_samples,
        "perturbations_per_eval": perturbations_per_eval,
        "seed": seed,
        "background_rows_given": n_total,
        "max_abs_additivity_gap": float(np.abs(result.delta).max()),
        "runtime_ms": result.metadata["runtime_ms"],
    }
    if "patch_size" in result.metadata:
        metadata["patch_size"] = result.metadata["patch_size"]
    return GlobalImportance(
        feature_names=result.feature_names,
        importance=importance,
        n_background=result.n_instances,
        metadata=metadata,
        image=result.image,
    )


def rank_correlation(a: Any, b: Any) -> float:
    """Spearman rank correlation of two equally long score vectors (ties get average ranks).

    A constant vector has no ranking: the result is 1.0 if both are constant, else 0.0.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size == 0:
        raise InvalidInputError(
            f"rank_correlation needs two non-empty vectors of equal length, got {x.size}, {y.size}"
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InvalidInputError("rank_correlation inputs contain NaN or Inf values")
    rx, ry = _average_ranks(x), _average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    sx, sy = float((rx * rx).sum()), float((ry * ry).sum())
    if sx == 0.0 or sy == 0.0:
        return 1.0 if sx == sy == 0.0 else 0.0
    return float(np.clip(float((rx * ry).sum()) / math.sqrt(sx * sy), -1.0, 1.0))


def compare_importance(
    old: GlobalImportance, new: GlobalImportance, *, k: int = 5
) -> ImportanceComparison:
    """Compare two versions' importances, aligned by feature name.

    Raises:
        InvalidInputError: the two versions do not have the same features.
    """
    if sorted(old.feature_names) != sorted(new.feature_names):
        raise InvalidInputError("cannot compare importances of versions with different features")
    position = {name: i for i, name in enumerate(new.feature_names)}
    aligned = new.importance[[position[name] for name in old.feature_names]]
    k = max(1, min(k, len(old.feature_names)))
    top_old = old.ranking()[:k]
    top_new = new.ranking()[:k]
    return ImportanceComparison(
        spearman=rank_correlation(old.importance, aligned),
        top_k_overlap=len(set(top_old) & set(top_new)) / k,
        k=k,
        top_old=top_old,
        top_new=top_new,
    )


def _average_ranks(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(values.size, dtype=np.float64)
    start = 0
    while start < values.size:
        end = start
        while end + 1 < values.size and sorted_vals[end + 1] == sorted_vals[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return ranks
