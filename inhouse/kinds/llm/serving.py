"""Serving a generative LLM: ``SERVING`` (a :class:`ServingKind`).

An LLM answers OpenAI requests (``POST /v1/chat/completions``, ``/v1/completions``) through
its generating part (:mod:`inhouse.kinds.llm.generating`); the predict routes every kind
shares (OIP v2 infer, KServe v1 predict) refuse its bodies with a 400 that says where to
send them. ``describe`` tells the ingress the context window and the model's type; token
attributions of an answer are the explainer sidecar's (:mod:`inhouse.kinds.llm.explaining`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inhouse.errors import WrongEndpointError
from inhouse.kinds.llm.generating import ServedLLM, serve_llm
from inhouse.kinds.serving import ServingKind
from inhouse.registry import ModelVersion, Registry

CHAT_ROUTE = "/v1/chat/completions"


def _refuse(model: str | None = None) -> WrongEndpointError:
    name = f"{model!r} " if model else ""
    return WrongEndpointError(
        f"model {name}is a generative LLM: send OpenAI chat requests to POST {CHAT_ROUTE} "
        "(or text completions to POST /v1/completions), not predict requests"
    )


class LLMServing:
    """The LLM kind's ``ServingKind``."""

    multiplexed = False

    def refusal(self, spec: Mapping[str, Any]) -> str | None:
        return None

    # -- the replica --------------------------------------------------------------------

    def load(self, registry: Registry, info: ModelVersion) -> ServedLLM:
        from inhouse.config import LLMSettings

        return serve_llm(registry, info, LLMSettings())

    def load_variant(self, registry: Registry, served: ModelVersion, variant: str) -> ServedLLM:
        raise _refuse(served.model)

    def describe(self, loaded: ServedLLM) -> dict[str, Any]:
        llm = loaded.llm
        config = llm.spec.get("config", {})
        return {
            "model": llm.model,
            "version": llm.version,
            "platform": "llm",
            "model_type": config.get("model_type"),
            "role": llm.spec.get("role", "base"),
            "context_length": llm.context_length,
            "parameters": llm.spec.get("parameters"),
            "chat_template": bool(llm.spec.get("chat_template")),
            "max_sequences": loaded.limits.max_sequences,
        }

    def prepare(self, loaded: ServedLLM, inputs: Any) -> Any:
        raise _refuse(loaded.model)

    def predict(self, loaded: ServedLLM, batch: list[Any]) -> list[dict[str, Any]]:
        raise _refuse(loaded.model)

    # -- the explainer sidecar ----------------------------------------------------------

    def load_explained(self, registry: Registry, info: ModelVersion) -> Any:
        from inhouse.kinds.llm.explaining import load_explained

        return load_explained(registry, info)

    def explain(self, loaded: Any, call: Any, *, max_instances: int) -> dict[str, Any]:
        from inhouse.kinds.llm.explaining import explain

        answer: dict[str, Any] = explain(loaded, call, max_instances=max_instances)
        return answer

    def explain_png(self, loaded: Any, call: Any, *, max_instances: int) -> bytes:
        from inhouse.kinds.llm.explaining import explain_png

        png: bytes = explain_png(loaded, call, max_instances=max_instances)
        return png

    # -- the ingress: protocols ---------------------------------------------------------

    def model_metadata(self, *, model: str, info: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "name": model,
            "versions": [str(info["version"])],
            "platform": "llm",
            "inputs": [],
            "outputs": [],
            "context_length": info.get("context_length"),
            "model_type": info.get("model_type"),
            "openai": CHAT_ROUTE,
        }

    def parse_v2(
        self, body: Any, info: Mapping[str, Any], *, max_instances: int
    ) -> tuple[Any, str | None]:
        raise _refuse(info.get("model"))

    def parse_v1(self, body: Any, info: Mapping[str, Any], *, max_instances: int) -> Any:
        raise _refuse(info.get("model"))

    def parse_explain(
        self, body: Any, info: Mapping[str, Any], *, max_instances: int, fmt: str
    ) -> Any:
        from inhouse.kinds.llm.explaining import parse_explain

        return parse_explain(body, info, max_instances=max_instances, fmt=fmt)

    def v2_response(
        self, *, model: str, request_id: str | None, result: Mapping[str, Any]
    ) -> dict[str, Any]:
        raise _refuse(model)

    def v1_response(self, result: Mapping[str, Any]) -> dict[str, Any]:
        raise _refuse(result.get("model"))


SERVING: ServingKind[ServedLLM, Any] = LLMServing()
