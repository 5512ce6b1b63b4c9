"""``inhouse models list|show|import|register``: the model registry from the command line.

``list`` and ``show`` read the metadata database only: they import neither torch nor Ray.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from inhouse.cli.auth import authorize
from inhouse.cli.import_cmd import add_models_import
from inhouse.cli.models_register_cmd import add_models_register
from inhouse.cli.parser import leaf
from inhouse.config import Settings
from inhouse.console import print_table


def add_parser(commands: Any) -> None:
    """Register ``models`` and its actions on the ``inhouse`` sub-parsers."""
    text = "the model registry"
    models = commands.add_parser("models", help=text, description=text)
    acts = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    leaf(acts, "list", cmd_models_list, "every version of every model")
    show = leaf(acts, "show", cmd_models_show, "one version with metrics and lineage")
    show.add_argument("model", help="model name")
    show.add_argument("--version", default="champion", help="number, alias or 'latest'")
    show.add_argument(
        "--training-stats",
        action="store_true",
        help="also show statistics of the training rows (global importance); "
        "needs data:read on the version's data set",
    )
    add_models_import(acts)
    add_models_register(acts)


def registry(settings: Settings) -> Any:
    """The settings' model registry (imported on first use)."""
    from inhouse import services

    return services.registry(settings)


def cmd_models_list(settings: Settings, _args: argparse.Namespace) -> int:
    reg = registry(settings)
    rows = []
    for model in reg.models():
        aliases = reg.aliases(model)
        for info in reg.versions(model):
            tags = ",".join(a for a, v in aliases.items() if v == info.version)
            rows.append(
                [
                    model,
                    info.version,
                    tags,
                    f"{info.metrics.get('test_accuracy', 0):.4f}",
                    info.lineage.get("dataset", ""),
                    info.created_at.strftime("%F %T"),
                ]
            )
    print_table(["model", "version", "aliases", "test acc", "data set", "created"], rows)
    return 0


def cmd_models_show(settings: Settings, args: argparse.Namespace) -> int:
    """One version as JSON. Statistics of its training rows (global importance...) are shown
    only with ``--training-stats`` and ``data:read`` on its data set: whoever may read the rows
    learns nothing more from them; a predict-only token must not."""
    reg = registry(settings)
    info = reg.get(args.model, args.version)
    dataset = str(info.lineage.get("dataset") or args.model)
    lineage: dict[str, Any] = {
        **info.lineage,
        "training_stats": f"not shown; pass --training-stats (needs data:read on {dataset})",
    }
    if getattr(args, "training_stats", False):
        authorize(
            settings,
            action="data:read",
            resource=dataset,
            detail=f"training statistics of {info.model} v{info.version}",
        )
        lineage = reg.full_lineage(info)
    print(
        json.dumps(
            {
                "model": info.model,
                "version": info.version,
                "created_at": str(info.created_at),
                "aliases": [a for a, v in reg.aliases(args.model).items() if v == info.version],
                "sha256": info.sha256,
                "size_bytes": info.size_bytes,
                "metrics": info.metrics,
                "spec": {k: v for k, v in info.spec.items() if k != "feature_names"},
                "lineage": lineage,
                "path": info.uri or str(info.path),  # s3://... on object storage
            },
            indent=2,
            default=str,
        )
    )
    return 0
