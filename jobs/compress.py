"""Compress a registered model version (prune + int8) as a Ray job and gate it against its parent.

Run it on a cluster exactly as a user would::

    ray job submit --working-dir . -- python -m inhouse.jobs.compress --model digits --prune 0.9

The work (fine-tuning after each pruning step, measuring, explaining) runs in one Ray task on
the cluster, by the kind of the version's spec (``kind.compressing``, e.g.
:mod:`inhouse.kinds.tabular.compressing`; a kind without one is refused), tested without Ray.
The kind registers the compressed copy as a new version whose lineage names its parent and
moves ``champion`` to it when the gate passes; the job prints the report as markdown and ends
with the ``INHOUSE_RESULT`` summary line.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import ray
import ray.exceptions
from sqlalchemy.engine import Engine

from inhouse import services
from inhouse.config import CompressionSettings, GateSettings, Settings, load_settings
from inhouse.console import RESULT_MARKER, emit
from inhouse.errors import InhouseError, ModelNotFoundError
from inhouse.jobs.driver import joined_cluster
from inhouse.kinds import kind_for_spec
from inhouse.registry import Registry


def compress_model(
    *,
    registry: Registry,
    engine: Engine,
    model: str,
    ref: str,
    settings: CompressionSettings,
    gate: GateSettings,
    promote: bool,
) -> dict[str, Any]:
    """Compress ``model`` at ``ref`` through the kind of its spec (what the Ray task runs; no
    Ray here); a kind without a compressing part is a clear error naming those with one.

    Raises:
        ModelNotFoundError: no such model or version (``cannot compress: ...``).
        InvalidInputError: the version's kind cannot be compressed, or its own refusal.
    """
    try:
        spec = registry.get(model, ref).spec
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(f"cannot compress: {exc.message}") from None
    return kind_for_spec(spec).compressing.compress(
        registry=registry,
        engine=engine,
        model=model,
        ref=ref,
        settings=settings,
        gate=gate,
        promote=promote,
    )


# No retries: a task that died after registering must not register a second copy.
@ray.remote(num_cpus=1, max_retries=0)
def compress_task(
    settings: Settings,
    model: str,
    ref: str,
    compression: CompressionSettings,
    gate: GateSettings,
    promote: bool,
) -> dict[str, Any]:
    """Runs on a cluster worker: open the services there and compress through the kind of the
    version's spec."""
    return compress_model(
        registry=services.registry(settings),
        engine=services.engine(settings),
        model=model,
        ref=ref,
        settings=compression,
        gate=gate,
        promote=promote,
    )


def run(
    settings: Settings,
    *,
    model: str,
    ref: str = "champion",
    compression: CompressionSettings,
    gate: GateSettings,
    promote: bool = True,
) -> dict[str, Any]:
    """Compress ``model`` at ``ref`` in a Ray task; returns the kind's summary.

    Raises:
        InhouseError: the task's own error (unknown model, already compressed...), re-raised
            as itself rather than wrapped in a RayTaskError.
    """
    task = compress_task.remote(settings, model, ref, compression, gate, promote)
    try:
        summary: dict[str, Any] = ray.get(task)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, InhouseError):
            raise exc.cause from None
        raise
    return summary


def build_parser() -> argparse.ArgumentParser:
    defaults, gate_defaults = CompressionSettings(), GateSettings()
    parser = argparse.ArgumentParser(
        prog="python -m inhouse.jobs.compress",
        description="Prune and quantize a registered model version, register the result as a "
        "new version and make it the champion if it passes the gate.",
    )
    parser.add_argument("--config", help="YAML settings file (see README)")
    parser.add_argument("--model", required=True, help="registry name of the model to compress")
    parser.add_argument(
        "--version",
        default="champion",
        help="version number, alias or 'latest' of the float parent (default: champion)",
    )
    parser.add_argument(
        "--prune",
        type=float,
        default=None,
        metavar="AMOUNT",
        help=f"fraction of Linear weights set to zero, 0-0.99 (default: {defaults.prune_amount})",
    )
    parser.add_argument(
        "--structured",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="prune whole neurons (output rows) instead of single weights (default: off)",
    )
    parser.add_argument(
        "--prune-steps",
        type=int,
        default=None,
        metavar="N",
        help=f"pruning steps, each followed by fine-tuning (default: {defaults.prune_steps})",
    )
    parser.add_argument(
        "--quantize",
        choices=["int8", "none"],
        default=None,
        help=f"Linear weight quantization (default: {defaults.quantize})",
    )
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        default=None,
        metavar="N",
        help=f"fine-tune epochs after each pruning step (default: {defaults.finetune_epochs})",
    )
    parser.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=None,
        metavar="POINTS",
        help="gate: most test accuracy points the compressed model may lose "
        f"(default: {gate_defaults.max_accuracy_drop_points})",
    )
    parser.add_argument(
        "--max-perplexity-increase",
        type=float,
        default=None,
        metavar="FRACTION",
        help="gate for generative models: most held-out perplexity increase of the copy "
        f"(default: {gate_defaults.max_perplexity_increase}, i.e. +5%%)",
    )
    parser.add_argument(
        "--min-size-ratio",
        type=float,
        default=None,
        metavar="RATIO",
        help="gate: parent bytes / compressed bytes must be at least this (default: no limit)",
    )
    parser.add_argument(
        "--no-promote",
        dest="promote",
        action="store_false",
        help="register the compressed version but leave the champion alias where it is",
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> tuple[CompressionSettings, GateSettings]:
    """The compression and gate settings the flags ask for (unset flags keep the defaults).

    Raises:
        ConfigError: naming the bad field, e.g. ``--prune 1.5``.
    """
    compression = {
        "prune_amount": args.prune,
        "structured": args.structured,
        "prune_steps": args.prune_steps,
        "quantize": args.quantize,
        "finetune_epochs": args.finetune_epochs,
    }
    gate = {
        "max_accuracy_drop_points": args.max_accuracy_drop,
        "max_perplexity_increase": args.max_perplexity_increase,
        "min_size_ratio": args.min_size_ratio,
    }
    return (
        CompressionSettings.parse({k: v for k, v in compression.items() if v is not None}),
        GateSettings.parse({k: v for k, v in gate.items() if v is not None}),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(config_file=args.config)
        compression, gate = settings_from_args(args)
    except InhouseError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    try:
        with joined_cluster():
            summary = run(
                settings,
                model=args.model,
                ref=args.version,
                compression=compression,
                gate=gate,
                promote=args.promote,
            )
    except InhouseError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(summary["report_markdown"])
    emit(RESULT_MARKER, summary)
    print(f"{summary['model']} v{summary['version']} (compressed): {summary['message']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
