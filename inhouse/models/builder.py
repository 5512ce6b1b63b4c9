"""The user's own PyTorch modules: a builder (``pkg.module:function``) and its keyword arguments.

A builder is code every training worker and Serve replica imports and calls, so
:func:`check_allowed` accepts it only under a module prefix an admin listed in
``models.allowed_builder_prefixes`` (empty: none). The registry spec (kind ``torch_module``)
records the builder, its JSON keyword arguments and the data set's shape; :func:`build_user_model`
rebuilds ``Standardize → the user's module`` from it, so the tabular kind trains (the scaling is
fitted like the MLP's), serves, explains and compresses it unchanged. A user's weights (their
state dict) load into the second part; the scaling starts as the identity.

The user's ``forward`` takes a float tensor ``[n, input_dim]`` and returns logits
``[n, num_classes]``; :func:`check_forward` tries it before anything is registered.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from inhouse.errors import ConfigError, IntegrityError, InvalidInputError
from inhouse.models.mlp import ImageSize, Standardize

BUILDER_ARCH = "torch_module"  # the architecture (``spec["kind"]``) of a builder's versions
MAX_KWARGS_BYTES = 64 * 1024
_TARGET_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):([A-Za-z_]\w*)$")


class BuilderSpec(BaseModel):
    """Architecture of a builder's version; stored with every version to rebuild it."""

    model_config = ConfigDict(extra="forbid")

    kind: str = BUILDER_ARCH
    builder: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    input_dim: int = Field(ge=1, le=1_000_000)
    num_classes: int = Field(ge=2, le=100_000)
    feature_names: list[str] = Field(default_factory=list)
    class_names: list[str] = Field(default_factory=list)
    image: ImageSize | None = None  # the features are an image's pixels: heat-map explanations

    @field_validator("builder")
    @classmethod
    def _target(cls, value: str) -> str:
        try:
            split_target(value)
        except InvalidInputError as exc:  # pydantic reports ValueErrors by field
            raise ValueError(exc.message) from None
        return value


def split_target(target: str) -> tuple[str, str]:
    """``"pkg.module:function"`` → ``("pkg.module", "function")``.

    Raises:
        InvalidInputError: not of that form.
    """
    match = _TARGET_RE.fullmatch(target) if isinstance(target, str) else None
    if match is None:
        raise InvalidInputError(
            f"builder {str(target)[:100]!r} must be 'package.module:function' "
            "(a dotted module path, a colon, a function name)"
        )
    return match.group(1), match.group(2)


def check_allowed(target: str, *, allowed_prefixes: list[str]) -> str:
    """``target`` when its module is one of ``allowed_prefixes`` or below one.

    Raises:
        ConfigError: no prefix allows it (names the setting an admin changes).
    """
    module, _ = split_target(target)
    for prefix in allowed_prefixes:
        if module == prefix or module.startswith(prefix + "."):
            return target
    allowed = ", ".join(allowed_prefixes) or "none"
    raise ConfigError(
        f"builder {target!r} is not under an allowed module prefix (allowed: {allowed}); "
        "an admin adds its package to models.allowed_builder_prefixes "
        "(INHOUSE_MODELS__ALLOWED_BUILDER_PREFIXES='[\"pkg\"]' or the YAML file)"
    )


def parse_kwargs(text: str | None) -> dict[str, Any]:
    """The builder's keyword arguments from a JSON object (``None``: none).

    Raises:
        InvalidInputError: not a JSON object, or over ``MAX_KWARGS_BYTES``.
    """
    if not text:
        return {}
    if len(text.encode("utf-8")) > MAX_KWARGS_BYTES:
        raise InvalidInputError(f"--kwargs is larger than {MAX_KWARGS_BYTES} bytes")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--kwargs is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInputError("--kwargs must be a JSON object of keyword arguments")
    return value


def import_builder(target: str) -> Callable[..., Any]:
    """The builder function ``target`` names, imported in this process.

    Raises:
        ConfigError: its module cannot be imported here, or has no such function.
    """
    module_name, function = split_target(target)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"builder {target!r} cannot be imported on this node ({exc}); install its package "
            "on every node of the cluster (the same Python environment as the workers)"
        ) from None
    builder = getattr(module, function, None)
    if not callable(builder):
        raise ConfigError(f"builder {target!r}: module {module_name} has no function {function}")
    return builder  # type: ignore[no-any-return]


def build_user_model(spec: BuilderSpec) -> nn.Sequential:
    """``Standardize(input_dim) → builder(**kwargs)``, randomly initialised.

    Raises:
        ConfigError: the builder cannot be imported here.
        InvalidInputError: the builder failed or did not return an ``nn.Module``.
    """
    builder = import_builder(spec.builder)
    try:
        module = builder(**spec.kwargs)
    except Exception as exc:  # the user's code: any failure is theirs, named
        raise InvalidInputError(
            f"builder {spec.builder!r} failed with kwargs {spec.kwargs}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(module, nn.Module):
        raise InvalidInputError(
            f"builder {spec.builder!r} returned {type(module).__name__}, not a torch nn.Module"
        )
    return nn.Sequential(Standardize(spec.input_dim), module)


def load_user_weights(model: nn.Sequential, weights: dict[str, torch.Tensor]) -> None:
    """Load the user's own state dict (their module's names) into ``model``'s second part.

    Raises:
        IntegrityError: names or shapes do not fit the module the builder made (one line).
    """
    own = model[1].state_dict()
    missing, unexpected = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    shapes = [
        f"{key} {list(weights[key].shape)} (module: {list(own[key].shape)})"
        for key in own
        if key in weights and weights[key].shape != own[key].shape
    ]
    if missing or unexpected or shapes:
        raise IntegrityError(
            "the weights do not fit the builder's module: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}, other shapes {shapes[:2]}"
        )
    model[1].load_state_dict(weights)


def check_forward(model: nn.Module, spec: BuilderSpec) -> None:
    """Run two rows of zeros through ``model``: logits ``[2, num_classes]`` expected.

    Raises:
        InvalidInputError: the forward fails or answers another shape.
    """
    probe = torch.zeros(2, spec.input_dim)
    try:
        with torch.inference_mode():
            out = model.eval()(probe)
    except Exception as exc:  # the user's forward
        raise InvalidInputError(
            f"builder {spec.builder!r}: forward on a float tensor [2, {spec.input_dim}] failed: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != [2, spec.num_classes]:
        raise InvalidInputError(
            f"builder {spec.builder!r}: forward must return logits [n, {spec.num_classes}] "
            f"(the data set's classes), got {shape} for n=2"
        )
