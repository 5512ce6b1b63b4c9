"""Register the user's own PyTorch module (``inhouse models register --builder``) as a tabular
version: built by an allowed builder, its safetensors weights loaded, tried, evaluated on the
data set's test split and recorded with the builder in its spec and lineage.

The version is then a tabular version like the MLP's: it serves, explains, compresses and is
retrained by the tabular kind. Its lineage has no row window (its weights were trained
elsewhere), so the coordinator's first retrain reads the data set from its start.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

from inhouse.config import Settings
from inhouse.errors import InvalidInputError
from inhouse.models.builder import (
    BuilderSpec,
    build_user_model,
    check_allowed,
    check_forward,
    load_user_weights,
    split_target,
)
from inhouse.registry import ModelVersion, Registry

MAX_WEIGHTS_BYTES = 4 << 30


def read_weights(path: Path) -> dict[str, Any]:
    """The tensors of a ``.safetensors`` file (never pickle).

    Raises:
        InvalidInputError: missing, too large or not a safetensors file (naming it).
    """
    if not path.is_file():
        raise InvalidInputError(f"weights file {path} does not exist")
    if path.suffix != ".safetensors":
        raise InvalidInputError(
            f"weights file {path} must be .safetensors (pickle formats can run code): save it "
            "with safetensors.torch.save_file(module.state_dict(), 'model.safetensors')"
        )
    if path.stat().st_size > MAX_WEIGHTS_BYTES:
        raise InvalidInputError(f"weights file {path} is larger than {MAX_WEIGHTS_BYTES} bytes")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return dict(load_file(str(path)))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InvalidInputError(f"weights file {path} is not valid safetensors: {exc}") from None


def builder_lineage(target: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The builder as the lineage records it: the function, its arguments and the SHA-256 of
    its module's source file where it has one."""
    module_name, _ = split_target(target)
    spec = importlib.util.find_spec(module_name)
    origin = spec.origin if spec is not None else None
    source = Path(origin) if origin and origin.endswith(".py") else None
    return {
        "target": target,
        "kwargs": kwargs,
        "module_file": str(source) if source else None,
        "module_sha256": hashlib.sha256(source.read_bytes()).hexdigest() if source else None,
    }


def register_user_model(
    settings: Settings,
    registry: Registry,
    *,
    name: str,
    builder: str,
    kwargs: dict[str, Any],
    weights: Path,
    dataset: str,
    promote: bool,
) -> ModelVersion:
    """Check, build, load, try and register the user's module as a new version of ``name``.

    Raises:
        ConfigError: the builder is not allowed, or cannot be imported here.
        InvalidInputError: bad weights file, a failing builder or forward, a data set that
            does not hold rows of numeric features.
        IntegrityError: the weights do not fit the module.
    """
    from inhouse import services
    from inhouse.data import describe, read_rows
    from inhouse.explain.lineage import importance_lineage
    from inhouse.explain.patches import spec_image
    from inhouse.kinds.modules import register_module
    from inhouse.training import evaluate

    check_allowed(builder, allowed_prefixes=settings.models.allowed_builder_prefixes)
    engine = services.engine(settings)
    info = describe(engine, dataset)
    if info.kind != "tabular":
        raise InvalidInputError(
            f"data set {dataset!r} holds {info.kind} rows; a builder's module takes numeric "
            "features (a tabular data set)"
        )
    spec = BuilderSpec(
        builder=builder,
        kwargs=kwargs,
        input_dim=info.n_features,
        num_classes=len(info.class_names),
        feature_names=info.feature_names,
        class_names=info.class_names,
    )
    module = build_user_model(spec)
    load_user_weights(module, read_weights(weights))
    check_forward(module, spec)
    test = read_rows(engine, dataset, split="test", up_to_id=info.last_id)
    metrics: dict[str, Any] = {"parameters": sum(p.numel() for p in module.parameters())}
    if len(test):
        final = evaluate(module, test.x, test.y)
        metrics |= {"test_accuracy": final.accuracy, "test_loss": final.loss}
    lineage: dict[str, Any] = {
        "dataset": dataset,
        "builder": builder_lineage(builder, kwargs),
        "source": {
            "kind": "safetensors",
            "path": str(weights),
            "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        },
        "privacy": {"dp": False},
        "parent": None,
    }
    train = read_rows(engine, dataset, split="train", up_to_id=info.last_id)
    if len(train):  # the rows a retrain's importance is measured on too (comparable ranks)
        lineage |= importance_lineage(
            module.eval(),
            train.x,
            feature_names=info.feature_names,
            champion_lineage=None,
            image=spec_image(spec.model_dump()),
        )
    version = register_module(
        registry, name, module=module, spec=spec.model_dump(), metrics=metrics, lineage=lineage
    )
    if promote:
        registry.set_alias(name, "champion", version.version)
    return version
