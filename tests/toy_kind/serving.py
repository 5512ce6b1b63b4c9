"""The toy kind's ``ServingKind``: strings in (v2 ``BYTES``, v1 instances), classes out; an
explanation is each text's length against the threshold."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from inhouse.errors import InvalidInputError, PayloadTooLargeError
from inhouse.kinds import load_module
from inhouse.kinds.serving import ServingKind
from inhouse.protocol import (
    InferenceRequest,
    PredictRequest,
    flatten_data,
    v1_response,
    v2_response,
    validate_body,
)
from inhouse.registry import ModelVersion, Registry


@dataclass(frozen=True)
class Toy:
    info: ModelVersion
    module: torch.nn.Module

    @property
    def model(self) -> str:
        return self.info.model

    @property
    def version(self) -> int:
        return self.info.version


def _texts(values: list[Any], max_instances: int) -> list[str]:
    if len(values) > max_instances:
        raise PayloadTooLargeError(f"{len(values)} instances; the limit is {max_instances}")
    if not values or not all(isinstance(v, str) for v in values):
        raise InvalidInputError("send one or more strings")
    return [str(v) for v in values]


class ToyServing:
    multiplexed = False

    def refusal(self, spec: Mapping[str, Any]) -> str | None:
        return "a toy without a threshold" if int(spec["threshold"]) <= 0 else None

    def load(self, registry: Registry, info: ModelVersion) -> Toy:
        return Toy(info, load_module(registry, info))

    def load_variant(self, registry: Registry, served: ModelVersion, variant: str) -> Toy:
        raise InvalidInputError("toys have no variants")

    def describe(self, loaded: Toy) -> dict[str, Any]:
        spec = loaded.info.spec
        return {
            "model": loaded.model,
            "version": loaded.version,
            "threshold": int(spec["threshold"]),
            "class_names": list(spec["class_names"]),
        }

    def prepare(self, loaded: Toy, inputs: list[str]) -> list[str]:
        return inputs

    def predict(self, loaded: Toy, batch: list[list[str]]) -> list[dict[str, Any]]:
        lengths = torch.tensor([len(text) for texts in batch for text in texts])
        with torch.inference_mode():
            probabilities = torch.softmax(loaded.module(lengths), dim=1).numpy()
        parts = np.split(probabilities, np.cumsum([len(texts) for texts in batch])[:-1])
        names = list(loaded.info.spec["class_names"])
        return [{"probabilities": part, "class_names": names} for part in parts]

    def load_explained(self, registry: Registry, info: ModelVersion) -> Toy:
        return self.load(registry, info)

    def explain(self, loaded: Toy, call: list[str], *, max_instances: int) -> dict[str, Any]:
        threshold = int(loaded.info.spec["threshold"])
        return {
            "model_name": loaded.model,
            "model_version": str(loaded.version),
            "explanations": [{"length": len(t), "threshold": threshold} for t in call],
        }

    def explain_png(self, loaded: Toy, call: list[str], *, max_instances: int) -> bytes:
        raise InvalidInputError("toy explanations are JSON only")

    def model_metadata(self, *, model: str, info: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "name": model,
            "versions": [str(info["version"])],
            "platform": "toy",
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        }

    def parse_v2(
        self, body: Any, info: Mapping[str, Any], *, max_instances: int
    ) -> tuple[list[str], str | None]:
        request: InferenceRequest = validate_body(InferenceRequest, body)
        values = flatten_data(request.inputs[0].data, max_instances)
        return _texts(values, max_instances), request.id

    def parse_v1(self, body: Any, info: Mapping[str, Any], *, max_instances: int) -> list[str]:
        request: PredictRequest = validate_body(PredictRequest, body)
        return _texts(request.instances, max_instances)

    def parse_explain(
        self, body: Any, info: Mapping[str, Any], *, max_instances: int, fmt: str
    ) -> list[str]:
        if fmt != "json":
            raise InvalidInputError("toy explanations are JSON only")
        return self.parse_v1(body, info, max_instances=max_instances)

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


SERVING: ServingKind[Toy, Toy] = ToyServing()
