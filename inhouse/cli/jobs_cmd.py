"""``inhouse train|compress|deploy|predict``: the work that runs on the Ray cluster.

``train`` and ``compress`` submit Ray jobs and follow them, ``deploy`` (re)deploys the Serve
application and ``predict`` calls it over HTTP; :mod:`inhouse.cli.ray_ops` holds the lazy Ray
imports. Every one is authorized (:func:`inhouse.cli.auth.authorize`) before it starts.
"""

from __future__ import annotations

import argparse
from typing import Any, cast

from pydantic import BaseModel

from inhouse.cli.auth import authorize
from inhouse.cli.kind_flags import add_kind_flags, refuse_foreign
from inhouse.cli.parser import leaf
from inhouse.cli.ray_ops import compress_args, deploy, run_job
from inhouse.config import Settings, TrainSettings
from inhouse.console import step
from inhouse.errors import UnavailableError
from inhouse.flags import section_argv


def add_parser(commands: Any) -> None:
    """Register ``train``, ``compress``, ``deploy`` and ``predict`` on the ``inhouse`` parsers."""
    train = leaf(commands, "train", cmd_train, "train a model as a Ray job and register it")
    train.epilog = (
        "The data set's kind decides the model: a tabular data set trains an MLP, a text data "
        "set fine-tunes a Hugging Face classifier (--model-dir or --base, --method ...). "
        "A flag of another kind is refused."
    )
    add_kind_flags(train, [TrainSettings, *_kind_flags().values()])  # the train section first

    comp = leaf(
        commands,
        "compress",
        cmd_compress,
        "prune + int8 a model version as a Ray job; serve it if it passes the gate",
    )
    comp.add_argument("model", help="model name")
    comp.add_argument("--version", default="champion", help="number, alias or 'latest'")
    comp.add_argument("--prune", type=float, help="fraction of weights set to zero (default 0.9)")
    comp.add_argument(
        "--structured",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="prune whole neurons instead of single weights (default: off)",
    )
    comp.add_argument("--prune-steps", type=int, help="pruning steps (default 3)")
    comp.add_argument(
        "--quantize", choices=["int8", "none"], help="weight quantization (default int8)"
    )
    comp.add_argument(
        "--finetune-epochs", type=int, help="fine-tuning epochs after each pruning step (default 8)"
    )
    comp.add_argument(
        "--max-accuracy-drop",
        type=float,
        help="gate: most accuracy points the compressed model may lose (default 0.5)",
    )
    comp.add_argument(
        "--max-perplexity-increase",
        type=float,
        metavar="FRACTION",
        help="gate for generative models: most held-out perplexity increase (default 0.05: +5%%)",
    )
    comp.add_argument(
        "--min-size-ratio",
        type=float,
        help="gate: least parent/compressed stored-size ratio (default none)",
    )
    comp.add_argument(
        "--no-promote",
        dest="promote",
        action="store_false",
        help="register without moving the champion alias",
    )

    dep = leaf(commands, "deploy", cmd_deploy, "serve models (default: all registered)")
    dep.add_argument("models", nargs="*", help="model names")
    dep.add_argument("--ref", default="champion", help="version or alias to serve")
    dep.add_argument(
        "--batching",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="dynamic batching of concurrent requests (default: on)",
    )

    pred = leaf(commands, "predict", cmd_predict, "send predictions to the served model")
    pred.add_argument("model", help="model name")
    source = pred.add_mutually_exclusive_group()
    source.add_argument("--input", help="JSON list of rows, e.g. '[[0, 1, ...]]'")
    source.add_argument(
        "--from-test",
        type=int,
        default=5,
        metavar="N",
        help="send N rows of the held-out test split (default 5)",
    )


def _kind_flags() -> dict[str, type[BaseModel]]:
    """Each trainable kind's training options, by kind name (the ``train`` section first)."""
    from inhouse.kinds import kind_named, known_kinds

    kinds = [kind_named(name) for name in known_kinds()]
    return {k.name: k.training.options_type for k in kinds if k.has_part("training")}


def cmd_train(settings: Settings, args: argparse.Namespace) -> int:
    """Submit ``inhouse.jobs.train`` for the data set's kind of model; follow it, summarise."""
    from inhouse import services
    from inhouse.data import describe
    from inhouse.kinds import kind_named

    authorize(
        settings,
        action="train:submit",
        resource=settings.train.model,
        detail=f"data set {settings.train.dataset}",
    )
    kind = describe(services.engine(settings), settings.train.dataset).kind
    training = kind_named(kind).training
    refuse_foreign(
        args,
        _kind_flags(),
        training.options_type,
        owner=f"data set {settings.train.dataset!r} holds {kind} rows, and {kind} training",
    )
    options = training.options(settings, args)
    builder = getattr(options, "builder", None)
    if builder:  # user code every worker runs
        authorize(settings, action="code:admin", resource="*", detail=f"train builder {builder}")
    argv = section_argv(cast(BaseModel, options))
    result = run_job(settings, "inhouse.jobs.train", argv, epochs=options.epochs)
    print("\n".join(training.summary_lines(result)))
    return 0


def cmd_compress(settings: Settings, args: argparse.Namespace) -> int:
    from inhouse.compress.admission import flags_finetune

    authorize(settings, action="model:deploy", resource=args.model, detail="compress")
    if flags_finetune(prune_amount=args.prune, finetune_epochs=args.finetune_epochs):
        # a fine-tune trains on the data set's rows: it is training, not only a deployment
        authorize(settings, action="train:submit", resource=args.model, detail="compress")
    result = run_job(settings, "inhouse.jobs.compress", compress_args(args))
    print(result["report_markdown"])
    print(
        f"registered {result['model']} v{result['version']} (compressed from "
        f"v{result['parent_version']}): {result['message']}"
    )
    return 0


def _servable(settings: Settings, ref: str) -> list[str]:
    """Registered models with a version ``ref`` that can answer requests (their kind says so:
    a text encoder without a classifier head cannot)."""
    from inhouse import services
    from inhouse.errors import InvalidInputError, ModelNotFoundError
    from inhouse.kinds import kind_for_spec

    registry, found = services.registry(settings), []
    for model in registry.models():
        try:
            spec = registry.get(model, ref).spec
            reason = kind_for_spec(spec).serving.refusal(spec)
        except ModelNotFoundError:
            print(f"skipping {model}: it has no version {ref!r}")
            continue
        except InvalidInputError as exc:  # no registered kind serves its architecture
            reason = exc.message
        if reason is not None:
            print(f"skipping {model}: {reason}")
            continue
        found.append(model)
    return found


def cmd_deploy(settings: Settings, args: argparse.Namespace) -> int:
    models = args.models or _servable(settings, args.ref)
    if not models:
        raise UnavailableError("no servable model in the registry; run `inhouse train` first")
    for model in models:
        authorize(settings, action="model:deploy", resource=model, detail=f"ref {args.ref}")
    with step(f"deploying {', '.join(models)} on Ray Serve"):
        deploy(settings, models, ref=args.ref, batching=args.batching)
    print(
        f"serving at {settings.serve_url}/v2/models/<name>/infer (OIP v2) and "
        f"/v1/models/<name>:predict (KServe v1)"
    )
    return 0


def cmd_predict(settings: Settings, args: argparse.Namespace) -> int:
    from inhouse.client import predict_rows

    return predict_rows(settings, args.model, inline=args.input, from_test=args.from_test)
