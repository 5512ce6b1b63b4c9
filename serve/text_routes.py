"""The text-model side of the ingress routes (:mod:`serve.ingress` calls these for text models).

Same URLs, auth, limits, audit and error bodies as numeric models; the bodies differ::

    POST /v2/models/{name}/infer        one BYTES input of strings
    POST /v1/models/{name}:predict      {"instances": ["text", {"text": "..."}]}
    POST /v1/models/{name}:explain      {"instances": [...], "target"?, "n_steps"?} (JSON only)

A ``serve_multiplexed_model_id: <variant>`` header sends the request to that fine-tuned variant
of ``name`` (an adapter registered against it, loaded on demand by the text replica); the token
then needs the permission on the variant.
"""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import Request
from ray.serve.handle import DeploymentHandle

from inhouse.config import ServeSettings
from inhouse.errors import InhouseError, InvalidInputError, ModelNotFoundError, UnavailableError
from inhouse.protocol import v1_response
from inhouse.registry import validate_model_name
from serve.text_protocol import (
    parse_text_explain,
    parse_text_v1,
    parse_text_v2,
    text_metadata,
    text_v2_response,
)

PREDICT, EXPLAIN = "model:predict", "model:explain"
VARIANT_HEADER = "serve_multiplexed_model_id"


class Front(Protocol):
    """What these routes use of the ingress."""

    _settings: ServeSettings
    _explainers: dict[str, DeploymentHandle]

    def _handle(self, name: str) -> DeploymentHandle: ...

    async def _authorize(self, request: Request, *, action: str, resource: str) -> str: ...

    async def _body(self, request: Request) -> Any: ...

    async def _model_info(self, name: str) -> dict[str, Any]: ...

    async def _predict(self, name: str, handle: DeploymentHandle, x: Any) -> dict[str, Any]: ...


async def _route(front: Front, request: Request, name: str, action: str) -> tuple[Any, str]:
    """Authorize (on the variant when one is asked for); the handle to call and the variant."""
    variant = request.headers.get(VARIANT_HEADER, "").strip()
    if variant:
        validate_model_name(variant)
    await front._authorize(request, action=action, resource=variant or name)
    handle = front._handle(name)
    if variant:
        return handle.options(multiplexed_model_id=variant), variant
    return handle, variant


async def _predict(front: Front, name: str, handle: Any, variant: str, texts: list[str]) -> Any:
    """A variant answers its own requests; the model's go through the ingress's canary split."""
    if variant:
        return await _call(handle.predict.remote(texts))
    return await _call(front._predict(name, handle, texts))


async def _call(awaitable: Any) -> Any:
    """Await a replica call: its InhouseError as is, any other failure a 503 (never a 500)."""
    try:
        return await awaitable
    except InhouseError:
        raise
    except Exception as exc:  # noqa: BLE001
        cause = getattr(exc, "cause", None)
        if isinstance(cause, InhouseError):
            raise cause from None
        raise UnavailableError(f"text replica failed: {type(exc).__name__}") from exc


async def v2_metadata(front: Front, name: str, request: Request) -> dict[str, Any]:
    await front._authorize(request, action=PREDICT, resource=name)
    info = await _call(front._model_info(name))
    return text_metadata(model=name, versions=[info["version"]], n_classes=info["n_classes"])


async def v2_infer(front: Front, name: str, request: Request) -> dict[str, Any]:
    handle, variant = await _route(front, request, name, PREDICT)
    texts, request_id = parse_text_v2(
        await front._body(request), max_instances=front._settings.max_instances
    )
    result = await _predict(front, name, handle, variant, texts)
    return text_v2_response(
        model=variant or name,
        version=result["version"],
        request_id=request_id,
        probabilities=result["probabilities"],
        class_names=result["class_names"],
    )


async def v1_predict(front: Front, name: str, request: Request) -> dict[str, Any]:
    handle, variant = await _route(front, request, name, PREDICT)
    texts = parse_text_v1(await front._body(request), max_instances=front._settings.max_instances)
    result = await _predict(front, name, handle, variant, texts)
    return v1_response(probabilities=result["probabilities"], class_names=result["class_names"]) | {
        "model": result["model"],
        "version": result["version"],
    }


async def v1_explain(front: Front, name: str, request: Request, fmt: str) -> dict[str, Any]:
    _, variant = await _route(front, request, name, EXPLAIN)
    explainer = front._explainers.get(name)
    if variant or explainer is None:
        raise ModelNotFoundError(f"{variant or name!r} has no explainer here")
    if fmt != "json":
        raise InvalidInputError("text explanations are JSON only (token attributions)")
    info = await _call(front._model_info(name))
    texts, target, steps = parse_text_explain(
        await front._body(request),
        max_instances=front._settings.max_instances,
        n_classes=info["n_classes"],
    )
    result: dict[str, Any] = await _call(explainer.explain.remote(texts, target, steps))
    return result
