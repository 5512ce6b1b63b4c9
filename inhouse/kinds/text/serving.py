"""Serving a text model: strings in, class probabilities out, token attributions explained.

The replica tokenises inside and answers with the version as :func:`load_as_served` loads it
(an int8 champion, or an adapter merged into its base and quantized). A request may name a
variant (``serve_multiplexed_model_id``): an adapter registered against the served model,
loaded on demand. Explanations (Captum LayerIntegratedGradients on the input embeddings) are
computed on the float version behind the served one (an int8 champion's parent): gradients
through the float embeddings are what the int8 model approximates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from inhouse.errors import InvalidInputError, ModelNotFoundError
from inhouse.explain.text import explain_text
from inhouse.explain.types import ExplainLimits, Explanation
from inhouse.kinds.serving import ServingKind
from inhouse.kinds.text.requests import (
    parse_text_explain,
    parse_text_v1,
    parse_text_v2,
    text_metadata,
    text_v2_response,
)
from inhouse.kinds.text.served import Served, load_as_served, load_served
from inhouse.models.text import encode_texts
from inhouse.protocol import v1_response
from inhouse.registry import ModelVersion, Registry, float_version

MAX_EXPLAIN_INSTANCES = 16  # token attributions cost n_steps forward passes per text


@dataclass(frozen=True)
class ExplainedText:
    """The float version explanations are computed on, and the served version it stands for."""

    served: Served
    reference: int

    @property
    def model(self) -> str:
        return self.served.model

    @property
    def version(self) -> int:
        return self.reference


@dataclass(frozen=True)
class TextExplainCall:
    """A parsed explain request: the texts, the target class (None: predicted) and IG steps."""

    texts: list[str]
    target: int | None
    n_steps: int


def variant_base(registry: Registry, info: ModelVersion) -> str:
    """The model name an adapter version was trained against (its base's own base included)."""
    if info.spec.get("role") != "adapter":
        raise InvalidInputError(f"{info.model} is not an adapter; only adapters are multiplexed")
    base = registry.get(info.spec["base"]["model"], str(info.spec["base"]["version"]))
    return base.model


class TextServing:
    """The text kind's ``ServingKind``."""

    multiplexed = True

    def refusal(self, spec: Mapping[str, Any]) -> str | None:
        if spec.get("role") == "encoder":
            return (
                "a text encoder without a classifier head: serve a model fine-tuned from it "
                "(inhouse train --base) instead"
            )
        return None

    def load(self, registry: Registry, info: ModelVersion) -> Served:
        return load_as_served(registry, info)

    def load_variant(self, registry: Registry, served: ModelVersion, variant: str) -> Served:
        try:
            info = registry.get(variant, "champion")
        except (ModelNotFoundError, InvalidInputError):
            raise ModelNotFoundError(f"variant {variant!r} is not registered") from None
        if variant_base(registry, info) != float_version(registry, served).model:
            raise InvalidInputError(f"{variant} is not a variant of {served.model}")
        return load_served(registry, info, quantize=True)

    def describe(self, loaded: Served) -> dict[str, Any]:
        spec = loaded.spec
        return {
            "model": loaded.model,
            "version": loaded.version,
            "input": "text",
            "n_features": 0,
            "n_classes": int(spec["num_classes"]),
            "class_names": list(spec["class_names"]),
            "max_length": int(spec["max_length"]),
            "precision": loaded.precision,
        }

    def prepare(self, loaded: Served, inputs: list[str]) -> list[str]:
        return inputs

    def predict(self, loaded: Served, batch: list[list[str]]) -> list[dict[str, Any]]:
        merged = [text for texts in batch for text in texts]
        probabilities = loaded.probabilities(merged)
        parts = np.split(probabilities, np.cumsum([len(texts) for texts in batch])[:-1])
        names = list(loaded.spec["class_names"])
        return [{"probabilities": part, "class_names": names} for part in parts]

    def load_explained(self, registry: Registry, info: ModelVersion) -> ExplainedText:
        served = load_served(registry, float_version(registry, info), quantize=False)
        return ExplainedText(served, info.version)

    def explain(
        self, loaded: ExplainedText, call: TextExplainCall, *, max_instances: int
    ) -> dict[str, Any]:
        """Per text: tokens, their attributions, prediction, explained class, completeness."""
        served = loaded.served
        ids, mask = encode_texts(
            served.tokenizer, call.texts, max_length=int(served.spec["max_length"])
        )
        explanation = explain_text(
            served.module,
            ids,
            attention_mask=mask,
            tokenizer=served.tokenizer,
            target=call.target,
            n_steps=call.n_steps,
            limits=ExplainLimits(max_instances=min(max_instances, MAX_EXPLAIN_INSTANCES)),
        )
        return _explanation_response(explanation, served, reference=loaded.reference)

    def explain_png(
        self, loaded: ExplainedText, call: TextExplainCall, *, max_instances: int
    ) -> bytes:
        raise InvalidInputError("text explanations are JSON only (token attributions)")

    def model_metadata(self, *, model: str, info: Mapping[str, Any]) -> dict[str, Any]:
        return text_metadata(model=model, versions=[info["version"]], n_classes=info["n_classes"])

    def parse_v2(
        self, body: Any, info: Mapping[str, Any], *, max_instances: int
    ) -> tuple[list[str], str | None]:
        return parse_text_v2(body, max_instances=max_instances)

    def parse_v1(self, body: Any, info: Mapping[str, Any], *, max_instances: int) -> list[str]:
        return parse_text_v1(body, max_instances=max_instances)

    def parse_explain(
        self, body: Any, info: Mapping[str, Any], *, max_instances: int, fmt: str
    ) -> TextExplainCall:
        if fmt != "json":
            raise InvalidInputError("text explanations are JSON only (token attributions)")
        texts, target, steps = parse_text_explain(
            body, max_instances=max_instances, n_classes=info["n_classes"]
        )
        return TextExplainCall(texts, target, steps)

    def v2_response(
        self, *, model: str, request_id: str | None, result: Mapping[str, Any]
    ) -> dict[str, Any]:
        return text_v2_response(
            model=model,
            version=result["version"],
            request_id=request_id,
            probabilities=result["probabilities"],
            class_names=result["class_names"],
        )

    def v1_response(self, result: Mapping[str, Any]) -> dict[str, Any]:
        answer = v1_response(
            probabilities=result["probabilities"], class_names=result["class_names"]
        )
        return answer | {"model": result["model"], "version": result["version"]}


def _explanation_response(
    explanation: Explanation, served: Served, *, reference: int
) -> dict[str, Any]:
    names = list(served.spec["class_names"])
    instances = []
    for i, tokens in enumerate(explanation.tokens or []):
        values = [float(v) for v in explanation.attributions[i, : len(tokens)]]
        instances.append(
            {
                "tokens": tokens,
                "attributions": values,
                "prediction": names[explanation.predictions[i]],
                "target": names[int(explanation.targets[i])],
                "delta": float(explanation.delta[i]),
            }
        )
    return {
        "model": served.model,
        "version": reference,
        "explained_version": served.version,
        "method": "layer_ig",
        "explanations": instances,
    }


SERVING: ServingKind[Served, ExplainedText] = TextServing()
