"""``explain``: one interface over Integrated Gradients, LIME and KernelSHAP.

Integrated Gradients is Captum's. LIME and KernelSHAP are ours by default (``backend="inhouse"``:
``inhouse.explain.lime`` and ``inhouse.explain.kernel_shap``, the same mathematics vectorised over
samples and instances); ``backend="captum"`` runs Captum's ``Lime`` and ``KernelShap`` instead,
one instance at a time, for comparison.

The model is any ``torch.nn.Module`` returning logits (rows, classes); probabilities are their
softmax. It is put in eval mode for the call and its previous mode restored afterwards. Parameter
gradients are never accumulated: IG differentiates with respect to the inputs only, and the
sampling methods run without grad.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

import captum
import torch
from captum.attr import IntegratedGradients, KernelShap, Lime
from pydantic import ValidationError
from torch import nn

from inhouse.errors import InvalidInputError
from inhouse.explain._coalitions import make_generator, seeded
from inhouse.explain._inputs import (
    ForwardFn,
    as_batch,
    checked_forward,
    eval_mode,
    feature_names_for,
    logits_fn,
    model_device_dtype,
    pick,
    resolve_baseline,
    resolve_targets,
    to_tensor,
)
from inhouse.explain.kernel_shap import kernel_shap
from inhouse.explain.lime import lime
from inhouse.explain.patches import ImageShape, checked_image, patches_for
from inhouse.explain.types import (
    METHOD_NAMES,
    ExplainLimits,
    ExplainOptions,
    Explanation,
)

BACKENDS = ("inhouse", "captum")


def explain(
    model: nn.Module,
    inputs: Any,
    *,
    method: str | None = None,
    target: int | Sequence[int] | None = None,
    feature_names: Sequence[str] | None = None,
    baseline: Any = None,
    background: Any = None,
    options: ExplainOptions | Mapping[str, Any] | None = None,
    limits: ExplainLimits | None = None,
    backend: str = "inhouse",
    image: ImageShape | Mapping[str, Any] | None = None,
) -> Explanation:
    """Attribute the model's output for each instance to its input features.

    Args:
        model: a module mapping a batch (rows, *instance_shape) to logits (rows, classes).
        inputs: one instance (1-D) or a batch (rows, ...); array-like or tensor.
        method: ``ig``, ``lime`` or ``shap``; overrides ``options.method``.
        target: output index to explain: one for all rows, one per row, or ``None`` for the
            predicted class of each row.
        feature_names: one name per feature (e.g. breast_cancer's 30 clinical features).
        baseline: explicit reference input (scalar, one instance or one per row); wins over
            ``options.baseline``.
        background: sample whose mean is the baseline when ``options.baseline == "mean"``.
        options: ``ExplainOptions`` or a mapping of its fields.
        limits: operator limits; defaults to ``ExplainLimits()``.
        backend: ``inhouse`` (vectorised LIME / KernelSHAP) or ``captum`` (Captum's, one
            instance at a time). Integrated Gradients is Captum's either way.
        image: ``(height, width)`` (or ``{"height", "width"}``) when the features are an
            image's row-major pixels: the explanation carries it (heat maps), and our LIME /
            KernelSHAP switch square pixel patches (``options.patch_size``) instead of pixels.

    Returns:
        The ``Explanation``, with the completeness delta (IG) or additivity gap (LIME/SHAP).

    Raises:
        InvalidInputError: NaN/Inf, wrong feature count or shape, bad target or option.
        PayloadTooLargeError: too many instances, features, IG steps or samples.
    """
    opts = parse_options(options)
    chosen = method if method is not None else opts.method
    if chosen not in ("ig", "lime", "shap"):
        raise InvalidInputError(f"unknown method {chosen!r}; use 'ig', 'lime' or 'shap'")
    if backend not in BACKENDS:
        raise InvalidInputError(f"unknown backend {backend!r}; use 'inhouse' or 'captum'")
    limits = limits if limits is not None else ExplainLimits()
    device, dtype = model_device_dtype(model)
    started = time.perf_counter()
    # inference_mode(False): callers such as a serving replica may run us under inference mode.
    with torch.inference_mode(False), eval_mode(model):
        batch = as_batch(to_tensor("inputs", inputs, device=device, dtype=dtype))
        n_rows, n_features = int(batch.shape[0]), math.prod(batch.shape[1:])
        limits.check(
            n_instances=n_rows,
            n_features=n_features,
            method=chosen,
            n_steps=opts.n_steps,
            n_samples=opts.n_samples,
            perturbations_per_eval=opts.perturbations_per_eval,
        )
        names = feature_names_for(n_features, feature_names)
        shape = checked_image(image, n_features)
        forward = logits_fn(model)
        outputs = checked_forward(forward, batch)
        targets = resolve_targets(target, outputs)
        base, baseline_kind = resolve_baseline(baseline, background, opts.baseline, batch)
        base_outputs = checked_forward(forward, base)
        if chosen == "ig":
            attr, params = _integrated_gradients(forward, batch, base, targets, opts, limits)
        elif backend == "captum":
            attr, params = _sampled_captum(forward, chosen, batch, base, targets, opts)
        else:
            at_x, at_base = pick(outputs, targets), pick(base_outputs, targets)
            groups, patch = patches_for(shape, opts.patch_size)
            attr, params = _sampled(
                forward, chosen, batch, base, targets, opts, at_x, at_base, groups
            )
            params |= patch
    runtime_ms = (time.perf_counter() - started) * 1000.0

    attributions = attr.detach().reshape(n_rows, -1).double().cpu().numpy()
    fx = pick(outputs, targets).double().cpu().numpy()
    fb = pick(base_outputs, targets).double().cpu().numpy()
    delta = attributions.sum(axis=1) - (fx - fb)
    probabilities = (
        torch.softmax(outputs.double(), dim=1).cpu().numpy() if outputs.shape[1] > 1 else None
    )
    metadata: dict[str, Any] = {
        "method_name": METHOD_NAMES[chosen],
        "delta_kind": "completeness" if chosen == "ig" else "additivity",
        **params,
        "captum_version": captum.__version__,
        "torch_version": torch.__version__,
        "runtime_ms": round(runtime_ms, 3),
        "ms_per_instance": round(runtime_ms / n_rows, 3),
    }
    return Explanation(
        method=chosen,
        attributions=attributions,
        feature_names=names,
        input_shape=tuple(int(s) for s in batch.shape[1:]),
        baseline=base.detach().reshape(n_rows, -1).double().cpu().numpy(),
        baseline_kind=baseline_kind,
        targets=targets,
        predictions=[int(p) for p in outputs.argmax(dim=1).tolist()],
        probabilities=probabilities,
        target_outputs=fx,
        baseline_outputs=fb,
        delta=delta,
        metadata=metadata,
        image=shape,
    )


def parse_options(options: ExplainOptions | Mapping[str, Any] | None) -> ExplainOptions:
    """``ExplainOptions`` from an instance, a mapping (e.g. a request body) or ``None``."""
    if options is None:
        return ExplainOptions()
    if isinstance(options, ExplainOptions):
        return options
    try:
        return ExplainOptions.model_validate(dict(options))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "options"
        raise InvalidInputError(f"invalid explain option {where}: {err['msg']}") from exc


def _integrated_gradients(
    forward: ForwardFn,
    batch: torch.Tensor,
    base: torch.Tensor,
    targets: list[int],
    opts: ExplainOptions,
    limits: ExplainLimits,
) -> tuple[torch.Tensor, dict[str, Any]]:
    n_rows = int(batch.shape[0])
    # Default: every step of every instance in one forward/backward pass; Captum needs >= 2 rows
    # per instance per chunk, and the operator cap bounds memory.
    wanted = opts.internal_batch_size or n_rows * opts.n_steps
    batch_size = max(min(wanted, limits.max_internal_batch_size), 2 * n_rows)
    with torch.enable_grad():
        attr = IntegratedGradients(forward).attribute(
            batch,
            baselines=base,
            target=targets,
            n_steps=opts.n_steps,
            method="gausslegendre",
            internal_batch_size=batch_size,
        )
    params = {
        "backend": "captum",
        "n_steps": opts.n_steps,
        "integration": "gausslegendre",
        "internal_batch_size": batch_size,
        "forward_passes": math.ceil(n_rows * opts.n_steps / batch_size),
    }
    return cast(torch.Tensor, attr), params


def _sampled(
    forward: ForwardFn,
    method: str,
    batch: torch.Tensor,
    base: torch.Tensor,
    targets: list[int],
    opts: ExplainOptions,
    fx: torch.Tensor,
    fb: torch.Tensor,
    groups: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Our vectorised LIME / KernelSHAP over the whole batch at once (of ``groups``: patches)."""
    generator = make_generator(opts.seed)
    if method == "lime":
        attr, params = lime(
            forward,
            batch,
            base,
            targets,
            n_samples=opts.n_samples,
            perturbations_per_eval=opts.perturbations_per_eval,
            generator=generator,
            groups=groups,
        )
    else:
        attr, params = kernel_shap(
            forward,
            batch,
            base,
            targets,
            input_outputs=fx,
            baseline_outputs=fb,
            n_samples=opts.n_samples,
            perturbations_per_eval=opts.perturbations_per_eval,
            generator=generator,
            groups=groups,
        )
    params["seed"] = opts.seed
    return attr, params


def _sampled_captum(
    forward: ForwardFn,
    method: str,
    batch: torch.Tensor,
    base: torch.Tensor,
    targets: list[int],
    opts: ExplainOptions,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Captum's Lime / KernelShap, one instance (one surrogate) at a time."""

    def no_grad_forward(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return forward(x)

    explainer = Lime(no_grad_forward) if method == "lime" else KernelShap(no_grad_forward)
    rows: list[torch.Tensor] = []
    # One instance at a time (one surrogate model each, as Captum does internally), with the
    # perturbations of that instance stacked perturbations_per_eval to a forward pass.
    with seeded(opts.seed, batch.device):
        for i in range(int(batch.shape[0])):
            attr = explainer.attribute(
                batch[i : i + 1],
                baselines=base[i : i + 1],
                target=targets[i],
                n_samples=opts.n_samples,
                perturbations_per_eval=opts.perturbations_per_eval,
            )
            rows.append(cast(torch.Tensor, attr))
    params: dict[str, Any] = {
        "backend": "captum",
        "n_samples": opts.n_samples,
        "perturbations_per_eval": opts.perturbations_per_eval,
        "forward_passes_per_instance": math.ceil(opts.n_samples / opts.perturbations_per_eval),
        "seed": opts.seed,
    }
    if method == "lime":
        params["interpretable_model"] = "Lasso(alpha=0.01)"
    return torch.cat(rows, dim=0), params
