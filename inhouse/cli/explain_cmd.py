"""``inhouse explain``: explain a registered model's predictions locally, no cluster needed.

::

    inhouse explain digits --from-test 3 --method shap --png digit.png
    inhouse explain breast_cancer --input '[[17.99, 10.38, ...]]' --top 5

Rows come inline (``--input``, a JSON list of rows or ``@file.json``) or from the held-out test
split of the data set the version was trained on. The same parsing and limits as the served
``:explain`` route apply, so what works here works over HTTP.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from inhouse.errors import InhouseError, InvalidInputError
from inhouse.kinds import load_module


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``explain`` on the ``inhouse`` sub-command parsers; returns its parser.

    Its handler (``args.handler(settings, args)``) is :func:`cmd_explain`.
    """
    help_text = "explain predictions of a registered model locally (no cluster needed)"
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "explain", help=help_text, description=help_text
    )
    parser.set_defaults(handler=cmd_explain)
    parser.add_argument("model", help="model name")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--input", help="JSON list of rows, e.g. '[[0, 1, ...]]', or @FILE holding one"
    )
    source.add_argument(
        "--from-test",
        type=_positive,
        default=1,
        metavar="N",
        help="explain the first N rows of the held-out test split (default 1)",
    )
    parser.add_argument(
        "--method",
        choices=["ig", "lime", "shap"],
        default="ig",
        help="ig: Integrated Gradients, lime: LIME, shap: KernelSHAP (default ig)",
    )
    parser.add_argument(
        "--target", type=int, metavar="K", help="class to explain (default: the predicted one)"
    )
    parser.add_argument("--png", metavar="PATH", help="also write a PNG of the first row")
    parser.add_argument(
        "--top", type=_positive, default=10, metavar="K", help="features shown per row (default 10)"
    )
    parser.add_argument("--version", default="champion", help="number, alias or 'latest'")
    parser.add_argument(
        "--baseline",
        choices=["zeros", "mean"],
        help="reference input: all zeros (default) or the feature mean stored in the model "
        "(over HTTP only DP versions offer 'mean')",
    )
    parser.add_argument(
        "--n-steps", type=int, metavar="N", help="Integrated Gradients path points (default 50)"
    )
    parser.add_argument(
        "--n-samples", type=int, metavar="N", help="LIME/SHAP perturbations per row (default 200)"
    )
    return parser


def cmd_explain(settings: Any, args: argparse.Namespace) -> int:
    """The ``explain`` handler: opens the registry and database named by ``settings``."""
    from inhouse import services

    try:
        registry = services.registry(settings)
        engine = services.engine(settings)
    except InhouseError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return run_explain(args, registry=registry, engine=engine)


def run_explain(args: argparse.Namespace, *, registry: Any, engine: Any) -> int:
    """Explain rows with a registry version and print the top features of each row.

    Returns 0, or 1 after one ``error: ...`` line on stderr.
    """
    try:
        return _run(args, registry, engine)
    except InhouseError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1


def _inline_rows(text: str) -> list[Any]:
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise InvalidInputError(f"--input {text[1:]}: {exc.strerror or exc}") from None
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--input is not JSON: {exc}") from None
    if isinstance(rows, list) and rows and not any(isinstance(v, list) for v in rows):
        rows = [rows]  # one row given flat
    if not isinstance(rows, list) or not rows:
        raise InvalidInputError("--input must be a JSON list of rows, e.g. [[0, 1, 2]]")
    return rows


def _test_rows(info: Any, engine: Any, count: int) -> tuple[list[Any], list[int]]:
    from inhouse.data import read_rows

    dataset = info.lineage.get("dataset")
    if not dataset:
        raise InvalidInputError(
            f"{info.model} v{info.version} names no data set in its lineage; pass --input"
        )
    test = read_rows(engine, str(dataset), split="test")
    if len(test) == 0:
        raise InvalidInputError(f"data set {dataset!r} has no test rows; pass --input")
    return test.x[:count].tolist(), [int(v) for v in test.y[:count]]


def _run(args: argparse.Namespace, registry: Any, engine: Any) -> int:
    from inhouse.atomic import atomic_write_bytes
    from inhouse.console import step
    from inhouse.explain import format_top_features
    from inhouse.explain.patches import spec_image
    from inhouse.explain.request import (
        explanation_png,
        parse_explain,
        run_explanation,
        server_limits,
    )
    from inhouse.explain.types import METHOD_NAMES

    info = registry.get(args.model, args.version)
    spec = info.spec
    n_features = int(spec["input_dim"])
    feature_names = [str(n) for n in spec.get("feature_names") or []]
    class_names = [str(n) for n in spec.get("class_names") or []]
    labels: list[int | None]
    if args.input is not None:
        rows = _inline_rows(args.input)
        labels = [None] * len(rows)
    else:
        rows, actual = _test_rows(info, engine, args.from_test)
        labels = list(actual)
    options = {
        key: value
        for key, value in (
            ("n_steps", args.n_steps),
            ("n_samples", args.n_samples),
            ("baseline", args.baseline),
        )
        if value is not None
    }
    body: dict[str, Any] = {"instances": rows, "method": args.method, "options": options}
    if args.target is not None:
        body["target"] = args.target
    limits = server_limits()
    x, method, target, options = parse_explain(
        body, n_features=n_features, limits=limits, n_classes=int(spec["num_classes"])
    )
    plural = "s" if len(x) != 1 else ""
    with step(
        f"explaining {info.model} v{info.version} on {len(x)} row{plural} "
        f"with {METHOD_NAMES[method]}"
    ):
        module = load_module(registry, info)
        explanation = run_explanation(
            module,
            x,
            method=method,
            target=target,
            options=options,
            feature_names=feature_names,
            limits=limits,
            # the caller holds the registry keys, hence the weights and their stored mean
            training_mean_allowed=True,
            image=spec_image(spec),
        )

    def name(index: int) -> str:
        return class_names[index] if 0 <= index < len(class_names) else str(index)

    delta_kind = explanation.metadata.get("delta_kind", "delta")
    for i in range(explanation.n_instances):
        predicted, explained = explanation.predictions[i], explanation.targets[i]
        line = f"row {i}: predicted {name(predicted)}"
        if explanation.probabilities is not None:
            line += f" (p={explanation.probabilities[i, predicted]:.3f})"
        label = labels[i]
        if label is not None:
            line += f", actual {name(label)}"
        line += f"; attributions for class {name(explained)}"
        line += f" ({delta_kind} delta {explanation.delta[i]:+.4f})"
        print(line)
        for text in format_top_features(explanation, args.top, instance=i).splitlines():
            print(f"  {text}")
    runtime = float(explanation.metadata.get("runtime_ms", 0.0))
    print(
        f"{METHOD_NAMES[method]}: {explanation.n_instances} row{plural} in {runtime:.0f} ms "
        f"({runtime / max(explanation.n_instances, 1):.0f} ms/row), baseline "
        f"{explanation.baseline_kind}, max |delta| {float(abs(explanation.delta).max()):.4f}"
    )
    if args.png:
        png = explanation_png(explanation, x, class_names=class_names, top_k=args.top)
        atomic_write_bytes(args.png, png)
        image = explanation.image
        kind = f"{image[0]}x{image[1]} heat map" if image else "bar chart"
        print(f"wrote {args.png} ({kind} of row 0)")
    return 0
