"""KServe v1 ``:explain``: the request body, the operator's limits, and the JSON / PNG answers.

Pure (no Ray, no HTTP), shared by the Serve explainer sidecar and ``inhouse explain``. The body::

    {"instances": [[...], ...], "method": "ig" | "lime" | "shap", "target": 3,
     "options": {"n_steps": 64, "n_samples": 300, "perturbations_per_eval": 64, ...}}

is parsed strictly (numbers only, no unknown keys). Everything wrong is ``InvalidInputError``
(422), over-limit instances, steps, samples or batch sizes included: those are refused before
any work is done. (A body over the HTTP size limit is the ingress's 413, not ours.) The limits
are always the server's (``server_limits``): nothing in a body can raise them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from pydantic import ConfigDict, Field
from torch import nn

from inhouse.errors import InvalidInputError, PayloadTooLargeError, PermissionDeniedError
from inhouse.explain.attribution import explain, parse_options
from inhouse.explain.patches import ImageShape, image_shape
from inhouse.explain.plots import bar_chart_png, heatmap_png, top_features
from inhouse.explain.types import BaselineKind, ExplainLimits, Explanation, Method
from inhouse.protocol import Strict, parse_v1, validate_body

_NO_GRADIENT = re.compile(r"grad|differentiat|backward", re.IGNORECASE)


class ExplainRequestOptions(Strict):
    """What a client may tune: the fields of ``ExplainOptions`` but ``method``.

    Unset fields take ``ExplainOptions``' defaults; ranges are checked there, once.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    n_steps: int | None = None
    n_samples: int | None = None
    perturbations_per_eval: int | None = None
    internal_batch_size: int | None = None
    baseline: BaselineKind | None = None
    seed: int | None = None
    patch_size: int | None = None


class ExplainRequest(Strict):
    """The body of KServe v1 ``POST /v1/models/{name}:explain``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    instances: list[list[float]] = Field(min_length=1)
    method: Method = "ig"
    target: int | None = Field(None, ge=0, description="Class to explain; default predicted.")
    options: ExplainRequestOptions | None = None


def server_limits(*, max_instances: int | None = None) -> ExplainLimits:
    """The operator's limits: ``ExplainLimits`` defaults, instances capped by ``max_instances``."""
    defaults = ExplainLimits()
    if max_instances is None:
        return defaults
    return defaults.model_copy(update={"max_instances": min(defaults.max_instances, max_instances)})


def parse_explain(
    body: Any, *, n_features: int, limits: ExplainLimits, n_classes: int | None = None
) -> tuple[np.ndarray, str, int | None, dict[str, Any]]:
    """Validate an explain body against the model's width and the server's limits.

    Returns:
        ``(x, method, target, options)``: the ``(n, n_features)`` float32 batch, the method,
        the target class (``None``: each row's prediction) and the options the client set.

    Raises:
        InvalidInputError: wrong types or width, non-finite numbers, unknown keys, bad target;
            too many instances, features, IG steps, samples, perturbations per forward pass or
            model rows (over ``limits``).
    """
    if isinstance(body, dict) and isinstance(body.get("instances"), list):
        count = len(body["instances"])
        if count > limits.max_instances:  # refuse before validating every number
            raise InvalidInputError(f"too many instances: {count} > limit {limits.max_instances}")
    request: ExplainRequest = validate_body(ExplainRequest, body)
    with over_limit_is_invalid():
        x = parse_v1(
            {"instances": request.instances},
            n_features=n_features,
            max_instances=limits.max_instances,
        )
    if request.target is not None and n_classes is not None and request.target >= n_classes:
        raise InvalidInputError(
            f"target {request.target} out of range: the model has {n_classes} classes"
        )
    options = request.options.model_dump(exclude_unset=True) if request.options else {}
    opts = parse_options({**options, "method": request.method})
    with over_limit_is_invalid():
        limits.check(
            n_instances=x.shape[0],
            n_features=n_features,
            method=request.method,
            n_steps=opts.n_steps,
            n_samples=opts.n_samples,
            perturbations_per_eval=opts.perturbations_per_eval,
        )
    return x, request.method, request.target, options


@contextmanager
def over_limit_is_invalid() -> Iterator[None]:
    """Report ``ExplainLimits`` violations as ``InvalidInputError`` (422), message unchanged.

    Over the HTTP API an abusive sample, step or batch count is a wrong request content (422),
    not a body too large to read (413).
    """
    try:
        yield
    except PayloadTooLargeError as exc:
        raise InvalidInputError(exc.message) from exc


def training_mean(module: nn.Module, n_features: int) -> np.ndarray | None:
    """The feature means a model stores (its ``Standardize`` layer), or ``None``."""
    for sub in module.modules():
        mean = dict(sub.named_buffers(recurse=False)).get("mean")
        if mean is not None and mean.numel() == n_features:
            return mean.detach().double().cpu().reshape(-1).numpy()
    return None


def mean_is_public(lineage: Mapping[str, Any]) -> bool:
    """Whether a version's stored feature mean says nothing about its training rows.

    A DP tabular version scales features by public bounds (``privacy.feature_scaling``), so
    its ``Standardize`` mean is their midpoint. Any other version's is the mean of its
    training rows, a statistic that no privacy budget covers.
    """
    privacy = lineage.get("privacy")
    return (
        isinstance(privacy, Mapping)
        and privacy.get("dp") is True
        and "bounds" in str(privacy.get("feature_scaling", ""))
    )


def run_explanation(
    module: nn.Module,
    x: np.ndarray,
    *,
    method: str,
    target: int | None,
    options: Mapping[str, Any],
    feature_names: Sequence[str] | None,
    limits: ExplainLimits,
    training_mean_allowed: bool = False,
    image: ImageShape | None = None,
) -> Explanation:
    """``explain`` for a registry model: baseline ``mean`` uses the model's stored mean.

    That mean is returned in the answer (``baseline``), so it is used only when
    ``training_mean_allowed``: the served explainer sets it when :func:`mean_is_public`,
    ``inhouse explain`` (where the registry keys are) always. ``image``: pixel-patch LIME/SHAP.

    Raises:
        InvalidInputError: bad options, over ``limits``, or ``ig`` on a version that cannot be
            differentiated.
        PermissionDeniedError: baseline ``mean`` and not ``training_mean_allowed``.
    """
    opts = parse_options({**options, "method": method})
    n_features = int(x.shape[1])
    background = None
    if opts.baseline == "mean":
        if not training_mean_allowed:
            raise PermissionDeniedError(
                "options.baseline 'mean' would reveal the mean of this version's training rows "
                "(only DP versions scaled by public bounds offer it here); use 'zeros'"
            )
        mean = training_mean(module, n_features)
        if mean is None:
            raise InvalidInputError(
                "options.baseline 'mean' needs the training mean, which this model does not "
                "store; use 'zeros'"
            )
        background = mean[None, :]
    names = list(feature_names) if feature_names and len(feature_names) == n_features else None
    try:
        with over_limit_is_invalid():
            return explain(
                module,
                torch.from_numpy(np.array(x, dtype=np.float32)),  # a copy: Ray's are read-only
                target=target,
                feature_names=names,
                background=background,
                options=opts,
                limits=limits,
                image=image,
            )
    except RuntimeError as exc:
        if method == "ig" and _NO_GRADIENT.search(str(exc)):
            # int8 kernels (compressed versions) have no backward pass.
            raise InvalidInputError(
                "method 'ig' needs gradients, which this model version does not provide; "
                "use 'shap' or 'lime'"
            ) from exc
        raise


def _class_name(index: int, names: Sequence[str]) -> str:
    return str(names[index]) if 0 <= index < len(names) else str(index)


def _num(value: float) -> float:
    return float(f"{float(value):.6g}")


def explanation_response(
    explanation: Explanation, *, model: str, version: int, class_names: Sequence[str]
) -> dict[str, Any]:
    """The JSON answer: one entry per instance plus the method's metadata.

    Each instance has its prediction and target (index and name), class probabilities,
    attributions as ``{feature: value}`` ordered by |value| (largest first), the baseline,
    f(x) and f(baseline) at the target, and ``delta`` (IG completeness / sampling additivity).
    An image's answer also has ``image`` ({height, width}) and, per instance, ``heatmap``: the
    attributions as height rows of width pixels.
    """
    n_features = explanation.attributions.shape[1]
    instances: list[dict[str, Any]] = []
    for i in range(explanation.n_instances):
        predicted, target = explanation.predictions[i], explanation.targets[i]
        probs = explanation.probabilities
        instances.append(
            {
                "prediction": {"index": predicted, "name": _class_name(predicted, class_names)},
                "target": {"index": target, "name": _class_name(target, class_names)},
                "probabilities": None if probs is None else [_num(p) for p in probs[i]],
                "attributions": {
                    name: _num(value)
                    for name, value in top_features(explanation, n_features, instance=i)
                },
                "baseline": [_num(b) for b in explanation.baseline[i]],
                "target_output": _num(explanation.target_outputs[i]),
                "baseline_output": _num(explanation.baseline_outputs[i]),
                "delta": _num(explanation.delta[i]),
            }
        )
        if explanation.image is not None:
            heat = explanation.heatmap(i)
            instances[-1]["heatmap"] = [[_num(v) for v in row] for row in heat]
    answer: dict[str, Any] = {
        "model_name": model,
        "model_version": str(version),
        "method": explanation.method,
        "baseline_kind": explanation.baseline_kind,
        "delta_kind": explanation.metadata.get("delta_kind", ""),
        "metadata": dict(explanation.metadata),
        "explanations": instances,
    }
    if explanation.image is not None:
        answer["image"] = {"height": explanation.image[0], "width": explanation.image[1]}
    return answer


def is_image_model(feature_names: Sequence[str], n_features: int) -> bool:
    """Whether features are an image's pixels (drawn as a heat map, not bars)."""
    return image_shape(feature_names, n_features) is not None


def explanation_png(
    explanation: Explanation,
    x: np.ndarray,
    *,
    class_names: Sequence[str],
    instance: int = 0,
    top_k: int = 15,
) -> bytes:
    """PNG of one instance: a heat map beside the input for an image, else a bar chart."""
    target = explanation.targets[instance]
    title = f"{explanation.metadata.get('method_name', explanation.method)}: "
    title += f"class {_class_name(target, class_names)}"
    if explanation.probabilities is not None:
        title += f" (p={explanation.probabilities[instance, target]:.3f})"
    if (side := int(explanation.metadata.get("patch_size") or 1)) > 1:
        title += f", {side}x{side} patches"
    n_features = explanation.attributions.shape[1]
    shape = explanation.image or image_shape(explanation.feature_names, n_features)
    if shape is not None:
        return heatmap_png(
            explanation.attributions[instance],
            shape=shape,
            image=np.asarray(x, dtype=np.float64)[instance],
            title=title,
        )
    return bar_chart_png(explanation, instance=instance, top_k=top_k, title=title)
