"""``inhouse models register``: the user's own trained model as a new version.

Two sources:

* ``--builder pkg.module:function [--kwargs JSON] --weights FILE.safetensors --dataset D``: any
  PyTorch module whose forward takes float features ``[n, features]`` and returns logits; a
  tabular version (:mod:`inhouse.kinds.tabular.user_model`). The builder is code every worker
  and replica runs: it must be under ``models.allowed_builder_prefixes`` and the caller needs
  ``code:admin`` besides ``model:deploy``.
* ``--hf DIR [--dataset D]``: a Hugging Face sequence-classification directory (no code of its
  own); a text classifier version (:mod:`inhouse.kinds.text.classifier_dir`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from inhouse.cli.auth import authorize
from inhouse.config import Settings
from inhouse.errors import InvalidInputError


def cmd_models_register(settings: Settings, args: argparse.Namespace) -> int:
    """Register a builder's module or a Hugging Face classifier as a new version."""
    from inhouse import services
    from inhouse.console import step

    if (args.builder is None) == (args.hf is None):
        raise InvalidInputError("give exactly one of --builder (with --weights) and --hf DIR")
    if args.builder is not None:
        info = _register_builder(settings, args)
    else:
        source = Path(args.hf).expanduser().resolve()
        authorize(settings, action="model:deploy", resource=args.name, detail=f"register {source}")
        registry = services.registry(settings)
        classes = _text_classes(settings, args.dataset) if args.dataset else None
        from inhouse.kinds.text.classifier_dir import register_classifier_dir

        with step(f"registering {source} as {args.name}"):
            info = register_classifier_dir(
                registry,
                source,
                name=args.name,
                max_length=args.max_length,
                class_names=classes,
                dataset=args.dataset,
            )
        if args.promote:
            registry.set_alias(args.name, "champion", info.version)
    sealed = "encrypted" if info.encrypted else "NOT encrypted (encryption at rest is off)"
    accuracy = info.metrics.get("test_accuracy")
    shown = f", test accuracy {accuracy:.4f}" if accuracy is not None else ""
    print(
        f"{info.model} v{info.version}: {info.spec['kind']} ({info.spec.get('builder', 'hf')}), "
        f"{info.metrics['parameters']:,} parameters{shown}, {sealed}"
        + (", champion" if args.promote else "")
    )
    return 0


def _register_builder(settings: Settings, args: argparse.Namespace) -> Any:
    from inhouse import services
    from inhouse.console import step
    from inhouse.kinds.tabular.user_model import register_user_model
    from inhouse.models.builder import check_allowed, parse_kwargs

    if args.weights is None or args.dataset is None:
        raise InvalidInputError("--builder needs --weights FILE.safetensors and --dataset NAME")
    kwargs = parse_kwargs(args.kwargs)
    check_allowed(args.builder, allowed_prefixes=settings.models.allowed_builder_prefixes)
    detail = f"register builder {args.builder}"
    authorize(settings, action="code:admin", resource="*", detail=detail)
    authorize(settings, action="model:deploy", resource=args.name, detail=detail)
    weights = Path(args.weights).expanduser().resolve()
    with step(f"registering {args.builder} with {weights.name} as {args.name}"):
        return register_user_model(
            settings,
            services.registry(settings),
            name=args.name,
            builder=args.builder,
            kwargs=kwargs,
            weights=weights,
            dataset=args.dataset,
            promote=args.promote,
        )


def _text_classes(settings: Settings, dataset: str) -> list[str]:
    from inhouse import services
    from inhouse.data import describe

    info = describe(services.engine(settings), dataset)
    if info.kind != "text":
        raise InvalidInputError(f"--hf classifies texts; data set {dataset!r} holds {info.kind}")
    return list(info.class_names)


def add_models_register(actions: Any) -> None:
    """Register ``register`` on the actions of the ``models`` group."""
    text = "register your own trained model: a PyTorch builder + weights, or a HF classifier"
    reg = actions.add_parser(
        "register",
        help=text,
        description=text,
        epilog="A builder runs on every worker and replica: it must be under a prefix in "
        "models.allowed_builder_prefixes (INHOUSE_MODELS__ALLOWED_BUILDER_PREFIXES) and "
        "the caller needs the code:admin permission.",
    )
    reg.set_defaults(handler=cmd_models_register)
    reg.add_argument("--name", required=True, help="registry model name")
    reg.add_argument("--builder", metavar="PKG.MODULE:FUNCTION", help="returns your nn.Module")
    reg.add_argument("--kwargs", metavar="JSON", help="keyword arguments of the builder")
    reg.add_argument("--weights", metavar="FILE", help="your module's state dict (.safetensors)")
    reg.add_argument("--hf", metavar="DIR", help="a Hugging Face sequence-classification dir")
    reg.add_argument(
        "--dataset", help="data set it answers for (builder: required; its shape and classes)"
    )
    reg.add_argument("--max-length", type=int, default=128, help="--hf: tokens per text")
    reg.add_argument(
        "--no-promote",
        dest="promote",
        action="store_false",
        help="register without moving the champion alias",
    )
