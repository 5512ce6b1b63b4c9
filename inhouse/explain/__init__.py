"""Explanations of model predictions, through Captum, behind one interface.

``explain(model, inputs, method=...)`` gives per-feature attributions by Integrated Gradients
(default), LIME or KernelSHAP; ``explain_text`` gives token attributions for transformers;
``global_importance`` gives mean |SHAP| per feature for a model version, and
``compare_importance`` / ``rank_correlation`` compare versions; ``plots`` draws PNGs.
"""

from inhouse.explain.attribution import explain, parse_options
from inhouse.explain.features import (
    BREAST_CANCER_FEATURES,
    dataset_feature_names,
    pixel_feature_names,
)
from inhouse.explain.global_importance import (
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
