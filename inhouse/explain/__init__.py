"""Explanations of model predictions, through Captum, behind one interface.

``explain(model, inputs, method=...)`` gives per-feature attributions by Integrated Gradients
(default, Captum's), LIME or KernelSHAP (ours, vectorised: ``lime``, ``kernel_shap``; Captum's
with ``backend="captum"``); ``explain_text`` gives token attributions for transformers;
``global_importance`` gives mean |SHAP| per feature for a model version, and
``compare_importance`` / ``rank_correlation`` compare versions; ``plots`` draws PNGs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inhouse.explain.attribution import explain, parse_options
    from inhouse.explain.features import (
        BREAST_CANCER_FEATURES,
        dataset_feature_names,
        pixel_feature_names,
    )
    from inhouse.explain.importance import (
        GlobalImportance,
        ImportanceComparison,
        compare_importance,
        global_importance,
        rank_correlation,
    )
    from inhouse.explain.plots import (
        PNG_MAGIC,
        bar_chart_png,
        format_top_features,
        heatmap_png,
        top_features,
    )
    from inhouse.explain.text import TokenizerLike, explain_text
    from inhouse.explain.types import (
        BaselineKind,
        ExplainLimits,
        ExplainOptions,
        Explanation,
        Method,
    )

# Imported on first use: Captum, matplotlib and friends cost seconds, and the CLI
# builds its parser from inhouse.cli.explain_cmd without needing them. The module of
# ``global_importance`` is ``importance``, not ``global_importance``: importing a submodule
# binds it as an attribute of this package, which would shadow the function of that name.
_WHERE = {
    "explain": "inhouse.explain.attribution",
    "parse_options": "inhouse.explain.attribution",
    "BREAST_CANCER_FEATURES": "inhouse.explain.features",
    "dataset_feature_names": "inhouse.explain.features",
    "pixel_feature_names": "inhouse.explain.features",
    "GlobalImportance": "inhouse.explain.importance",
    "ImportanceComparison": "inhouse.explain.importance",
    "compare_importance": "inhouse.explain.importance",
    "global_importance": "inhouse.explain.importance",
    "rank_correlation": "inhouse.explain.importance",
    "PNG_MAGIC": "inhouse.explain.plots",
    "bar_chart_png": "inhouse.explain.plots",
    "format_top_features": "inhouse.explain.plots",
    "heatmap_png": "inhouse.explain.plots",
    "top_features": "inhouse.explain.plots",
    "TokenizerLike": "inhouse.explain.text",
    "explain_text": "inhouse.explain.text",
    "BaselineKind": "inhouse.explain.types",
    "ExplainLimits": "inhouse.explain.types",
    "ExplainOptions": "inhouse.explain.types",
    "Explanation": "inhouse.explain.types",
    "Method": "inhouse.explain.types",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'inhouse.explain' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "BREAST_CANCER_FEATURES",
    "PNG_MAGIC",
    "BaselineKind",
    "ExplainLimits",
    "ExplainOptions",
    "Explanation",
    "GlobalImportance",
    "ImportanceComparison",
    "Method",
    "TokenizerLike",
    "bar_chart_png",
    "compare_importance",
    "dataset_feature_names",
    "explain",
    "explain_text",
    "format_top_features",
    "global_importance",
    "heatmap_png",
    "parse_options",
    "pixel_feature_names",
    "rank_correlation",
    "top_features",
]
