"""Serving a tabular model: rows of numeric features in, class probabilities out.

Requests are FP32 tensors ``[n, n_features]`` (OIP v2) or lists of numbers (KServe v1),
parsed by :mod:`inhouse.protocol`; explanations are LIME, SHAP or IG through
:mod:`inhouse.explain` (JSON, or a PNG of the first row).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from inhouse.errors import InvalidInputError
from inhouse.explain import Explanation
from inhouse.explain.patches import spec_image
from inhouse.explain.request import (
    explanation_png,
    explanation_response,
    mean_is_public,
    parse_explain,
    run_explanation,
    server_limits,
)
from inhouse.kinds.modules import load_module
from inhouse.kinds.serving import ServingKind
from inhouse.protocol import model_metadata, parse_v1, parse_v2, v1_response, v2_response
from inhouse.registry import ModelVersion, Registry


@dataclass(frozen=True)
class TabularModel:
    """One loaded registry version of a tabular model."""

    info: ModelVersion
    module: torch.nn.Module

    @property
    def model(self) -> str:
        return self.info.model

    @property
    def version(self) -> int:
        return self.info.version

    @property
    def n_features(self) -> int:
        return int(self.info.spec["input_dim"])

    @property
    def class_names(self) -> list[str]:
        return list(self.info.spec.get("class_names", []))


@dataclass(frozen=True)
class ExplainCall:
    """A parsed explain request: the rows, the method, the target class and the options."""

    x: np.ndarray
    method: str
    target: int | None
    options: dict[str, Any]


class TabularServing:
    """The tabular kind's ``ServingKind``."""

    multiplexed = False

    def refusal(self, spec: Mapping[str, Any]) -> str | None:
        return None

    def load(self, registry: Registry, info: ModelVersion) -> TabularModel:
        return TabularModel(info, load_module(registry, info))

    def load_variant(self, registry: Registry, served: ModelVersion, variant: str) -> TabularModel:
        raise InvalidInputError(f"{served.model} is a tabular model: it has no variants")

    def describe(self, loaded: TabularModel) -> dict[str, Any]:
        spec = loaded.info.spec
        return {
            "model": loaded.model,
            "version": loaded.version,
            "n_features": loaded.n_features,
            "n_classes": int(spec["num_classes"]),
            "class_names": loaded.class_names,
            "feature_names": list(spec.get("feature_names", [])),
        }

    def prepare(self, loaded: TabularModel, inputs: np.ndarray) -> np.ndarray:
        _check_width(inputs, loaded.n_features)
        return inputs.astype(np.float32, copy=False)

    def predict(self, loaded: TabularModel, batch: list[np.ndarray]) -> list[dict[str, Any]]:
        merged = torch.from_numpy(batch[0] if len(batch) == 1 else np.concatenate(batch, axis=0))
        with torch.inference_mode():
            probabilities = torch.softmax(loaded.module(merged), dim=1).numpy()
        parts = np.split(probabilities, np.cumsum([len(x) for x in batch])[:-1])
        names = loaded.class_names
        return [{"probabilities": part, "class_names": names} for part in parts]

    def load_explained(self, registry: Registry, info: ModelVersion) -> TabularModel:
        return self.load(registry, info)

    def explain(
        self, loaded: TabularModel, call: ExplainCall, *, max_instances: int
    ) -> dict[str, Any]:
        explanation = _explain(loaded, call, max_instances=max_instances)
        return explanation_response(
            explanation, model=loaded.model, version=loaded.version, class_names=loaded.class_names
        )

    def explain_png(self, loaded: TabularModel, call: ExplainCall, *, max_instances: int) -> bytes:
        first = ExplainCall(
            np.ascontiguousarray(call.x[:1]), call.method, call.target, call.options
        )
        explanation = _explain(loaded, first, max_instances=max_instances)
        return explanation_png(explanation, first.x, class_names=loaded.class_names)

    def model_metadata(self, *, model: str, info: Mapping[str, Any]) -> dict[str, Any]:
        return model_metadata(
            model=model,
            versions=[info["version"]],
            n_features=info["n_features"],
            n_classes=info["n_classes"],
        )

    def parse_v2(
        self, body: Any, info: Mapping[str, Any], *, max_instances: int
    ) -> tuple[np.ndarray, str | None]:
        return parse_v2(body, n_features=info["n_features"], max_instances=max_instances)

    def parse_v1(self, body: Any, info: Mapping[str, Any], *, max_instances: int) -> np.ndarray:
        return parse_v1(body, n_features=info["n_features"], max_instances=max_instances)

    def parse_explain(
        self, body: Any, info: Mapping[str, Any], *, max_instances: int, fmt: str
    ) -> ExplainCall:
        x, method, target, options = parse_explain(
            body,
            n_features=info["n_features"],
            limits=server_limits(max_instances=max_instances),
            n_classes=info["n_classes"],
        )
        return ExplainCall(x, method, target, options)

    def v2_response(
        self, *, model: str, request_id: str | None, result: Mapping[str, Any]
    ) -> dict[str, Any]:
        return v2_response(
            model=model,
            version=result["version"],
            request_id=request_id,
            probabilities=result["probabilities"],
        )

    def v1_response(self, result: Mapping[str, Any]) -> dict[str, Any]:
        return v1_response(probabilities=result["probabilities"], class_names=result["class_names"])


def _check_width(x: np.ndarray, expected: int) -> None:
    if x.ndim != 2 or x.shape[1] != expected:
        raise InvalidInputError(f"expected shape [n, {expected}], got {list(x.shape)}")


def _explain(loaded: TabularModel, call: ExplainCall, *, max_instances: int) -> Explanation:
    _check_width(call.x, loaded.n_features)
    return run_explanation(
        loaded.module,
        call.x,
        method=call.method,
        target=call.target,
        options=call.options,
        feature_names=loaded.info.spec.get("feature_names") or None,
        limits=server_limits(max_instances=max_instances),
        # a non-DP version's mean is a statistic of its rows: not for predict tokens
        training_mean_allowed=mean_is_public(loaded.info.lineage),
        image=spec_image(loaded.info.spec),  # heat maps, pixel patches for LIME/SHAP
    )


SERVING: ServingKind[TabularModel, TabularModel] = TabularServing()
