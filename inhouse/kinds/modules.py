"""A version's module: built by its kind from the spec, its bytes stored by the registry.

The registry stores artifact bytes (:mod:`inhouse.registry.artifacts`); here a module becomes
those bytes (``safetensors``: the float state dict; ``compressed``: :mod:`inhouse.compress`) and
back, rebuilt by the kind of the version's spec. torch is imported only when weights are touched.

Tensors shared between names (tied weights: a language model's output layer is its input
embedding) are stored once, under their first name; loading fills the other names through the
tie the rebuilt module has again (safetensors refuses to store shared memory twice).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inhouse.errors import IntegrityError, InvalidInputError
from inhouse.kinds.registry import kind_for_spec
from inhouse.registry import COMPRESSED_FORMAT, ModelVersion, Registry, validate_model_name
from inhouse.registry.artifacts import FILENAMES

if TYPE_CHECKING:
    from torch import nn

SAFETENSORS_FORMAT = "safetensors"


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a module from the spec stored in a version's lineage (its kind builds it)."""
    return kind_for_spec(spec).build(spec)


def artifact_bytes(module: nn.Module, *, fmt: str) -> bytes:
    """The plaintext bytes of ``module`` in ``fmt``, as the registry stores them."""
    if fmt == SAFETENSORS_FORMAT:
        from safetensors.torch import save as save_safetensors

        state = {k: v.detach().contiguous().cpu() for k, v in unshared(module.state_dict()).items()}
        return save_safetensors(state)
    if fmt == COMPRESSED_FORMAT:
        from inhouse.compress import dumps_compressed

        return dumps_compressed(module)
    raise InvalidInputError(f"unknown artifact format {fmt!r}; use one of {sorted(FILENAMES)}")


def unshared(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` without the names whose tensor is one an earlier name already holds (ties)."""
    seen: set[tuple[int, int, tuple[int, ...], Any]] = set()
    kept = {}
    for name, tensor in state.items():
        key = (tensor.data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.dtype)
        if tensor.numel() and key in seen:
            continue
        seen.add(key)
        kept[name] = tensor
    return kept


def load_weights(module: nn.Module, weights: dict[str, Any]) -> None:
    """Load stored ``weights`` into ``module``: every name must be filled, either stored or
    tied in ``module`` to a stored one.

    Raises:
        IntegrityError: the weights do not fit the module.
    """
    state = module.state_dict()
    tied = set(state) - set(unshared(state))
    result = module.load_state_dict(weights, strict=False)
    missing = set(result.missing_keys) - tied
    if missing or result.unexpected_keys:
        raise IntegrityError(
            "the stored weights do not fit the model: "
            f"missing {sorted(missing)[:3]}, unexpected {sorted(result.unexpected_keys)[:3]}"
        )


def register_module(
    registry: Registry,
    model: str,
    *,
    module: nn.Module,
    spec: dict[str, Any],
    metrics: dict[str, Any],
    lineage: dict[str, Any],
    fmt: str = SAFETENSORS_FORMAT,
) -> ModelVersion:
    """Store ``module`` as a new immutable version of ``model``; returns it with its number."""
    validate_model_name(model)
    if fmt == SAFETENSORS_FORMAT:
        build_model(spec).load_state_dict(module.state_dict())  # weights must fit the spec
    return registry.register(
        model,
        artifact=artifact_bytes(module, fmt=fmt),
        spec=spec,
        metrics=metrics,
        lineage=lineage,
        fmt=fmt,
    )


def load_module(registry: Registry, info: ModelVersion) -> nn.Module:
    """The ready-to-run module of a version (decrypted in memory), in eval mode."""
    data = registry.read_artifact(info)
    if info.format == COMPRESSED_FORMAT:
        from inhouse.compress import load_compressed

        return load_compressed(data, build=lambda: build_model(info.spec)).eval()
    from safetensors.torch import load as load_safetensors

    module = build_model(info.spec)
    load_weights(module, load_safetensors(data))
    return module.eval()
