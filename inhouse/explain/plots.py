"""Pictures of explanations: PNG bar charts of attributions, heat maps for images, top-k text.

Figures are drawn with matplotlib's object API on the Agg canvas directly (no ``pyplot``), so no
global backend or figure registry is touched and it is safe in servers and threads.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from inhouse.errors import InvalidInputError
from inhouse.explain.importance import GlobalImportance
from inhouse.explain.types import Explanation, FloatArray

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_POSITIVE = "#d62728"
_NEGATIVE = "#1f77b4"


def top_features(
    explanation: Explanation, k: int = 10, *, instance: int = 0
) -> list[tuple[str, float]]:
    """The ``k`` features of one instance with the largest |attribution|, signed values."""
    names, values = _instance(explanation, instance)
    order = np.argsort(-np.abs(values), kind="stable")[: max(k, 0)]
    return [(names[i], float(values[i])) for i in order]


def format_top_features(explanation: Explanation, k: int = 10, *, instance: int = 0) -> str:
    """Top features as aligned text lines (``name  +0.1234``), for the command line."""
    rows = top_features(explanation, k, instance=instance)
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name.ljust(width)}  {value:+.4f}" for name, value in rows)


def bar_chart_png(
    source: Explanation | GlobalImportance,
    *,
    instance: int = 0,
    top_k: int = 15,
    title: str | None = None,
    dpi: int = 100,
) -> bytes:
    """Horizontal bar chart of the ``top_k`` attributions (or global importances), as PNG.

    Positive attributions are red, negative blue; the largest magnitude is on top.
    """
    if top_k < 1:
        raise InvalidInputError(f"top_k must be >= 1, got {top_k}")
    if isinstance(source, GlobalImportance):
        pairs = source.top(top_k)
        default_title = f"Global importance (mean |SHAP|, {source.n_background} rows)"
        xlabel = "mean |attribution|"
    else:
        pairs = top_features(source, top_k, instance=instance)
        default_title = _explanation_title(source, instance)
        xlabel = "attribution"
    names = [name for name, _ in pairs][::-1]
    values = [value for _, value in pairs][::-1]
    fig = Figure(figsize=(7.0, 1.2 + 0.32 * len(pairs)), dpi=dpi)
    ax = fig.add_subplot()
    ax.barh(range(len(values)), values, color=[_POSITIVE if v >= 0 else _NEGATIVE for v in values])
    ax.set_yticks(range(len(names)), labels=names, fontsize=8)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_title(title if title is not None else default_title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def heatmap_png(
    attributions: Any,
    *,
    shape: tuple[int, int] = (8, 8),
    image: Any = None,
    title: str | None = None,
    dpi: int = 100,
    signed: bool = True,
) -> bytes:
    """Heat map of one image's attributions (digits' 8x8 or MNIST's 28x28 pixels), as PNG.

    The colour scale is centred on zero (red: for the target, blue: against); ``signed=False``
    (e.g. mean |attribution|) uses a white-to-red scale from zero. With ``image`` the input is
    drawn beside it in grey and its outline over the heat map.
    """
    heat = _as_image("attributions", attributions, shape)
    panels = 1 if image is None else 2
    fig = Figure(figsize=(3.6 * panels, 3.4), dpi=dpi)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    bound = float(np.abs(heat).max()) or 1.0
    if signed:
        norm = TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound)
        shown = axes[-1].imshow(heat, cmap="RdBu_r", norm=norm, interpolation="nearest")
    else:
        shown = axes[-1].imshow(heat, cmap="Reds", vmin=0.0, vmax=bound, interpolation="nearest")
    if image is not None:
        pixels = _as_image("image", image, shape)
        axes[0].imshow(pixels, cmap="gray_r", interpolation="nearest")
        axes[0].set_title("input", fontsize=10)
        axes[0].set_axis_off()
        low, high = float(pixels.min()), float(pixels.max())
        if high > low:  # the input's outline, faint, over the heat map
            axes[-1].contour(
                pixels, levels=[(low + high) / 2], colors="black", linewidths=0.6, alpha=0.35
            )
    axes[-1].set_title(title if title is not None else "attribution", fontsize=10)
    axes[-1].set_axis_off()
    fig.colorbar(shown, ax=axes[-1], fraction=0.046, pad=0.04)
    fig.tight_layout()
    return _png(fig)


def _instance(explanation: Explanation, instance: int) -> tuple[list[str], FloatArray]:
    if not 0 <= instance < explanation.n_instances:
        raise InvalidInputError(
            f"instance {instance} out of range: the explanation has {explanation.n_instances}"
        )
    return explanation.feature_names_of(instance), explanation.attributions_of(instance)


def _explanation_title(explanation: Explanation, instance: int) -> str:
    name = str(explanation.metadata.get("method_name", explanation.method))
    target = explanation.targets[instance]
    text = f"{name}: target {target}"
    if explanation.probabilities is not None:
        text += f" (p={explanation.probabilities[instance, target]:.3f})"
    return text


def _as_image(name: str, values: Any, shape: tuple[int, int]) -> FloatArray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} is not a numeric array") from exc
    if array.size != math.prod(shape):
        raise InvalidInputError(
            f"{name} has {array.size} values, cannot be shown as a {shape[0]}x{shape[1]} image"
        )
    if not np.isfinite(array).all():
        raise InvalidInputError(f"{name} contains NaN or Inf values")
    return array.reshape(shape)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)  # type: ignore[no-untyped-call]
    return buffer.getvalue()
