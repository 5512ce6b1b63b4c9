"""``inhouse``: the command line. Ray is imported lazily, only by commands that need it.

Every command has ``--help``. Commands that act on the cluster submit Ray jobs or talk to
Serve and print where to look (dashboard, logs). The parser (:mod:`inhouse.cli.parser`) builds
a command group only when it is invoked, so ``inhouse --help`` and the commands that read the
database start in well under a second.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from inhouse.cli.parser import build_parser
from inhouse.config import (
    FLAG_PREFIXES,
    LLMSettings,
    RaySettings,
    ServeSettings,
    TrainSettings,
)
from inhouse.errors import InhouseError
from inhouse.flags import section_overrides

if TYPE_CHECKING:
    from inhouse.config import Settings

__all__ = ["build_parser", "main"]


def _settings(args: argparse.Namespace) -> Settings:
    from inhouse import local_cluster
    from inhouse.config import load_settings
    from inhouse.private_paths import secure_dir

    overrides: dict[str, Any] = {}
    if args.home:
        overrides["home"] = args.home
    if args.database_url:
        overrides["database_url"] = args.database_url
    sections = (
        ("ray", RaySettings),
        ("serve", ServeSettings),
        ("llm", LLMSettings),
        ("train", TrainSettings),
    )
    for section, cls in sections:
        values = section_overrides(args, cls, prefix=FLAG_PREFIXES[section])
        if values:
            overrides[section] = values
    settings = load_settings(config_file=args.config, **overrides)
    for noisy in ("ray", "ray.serve", "ray._private.runtime_env"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    secure_dir(settings.home)  # 0700 on every start: the db, keys and tokens live there
    os.environ.update(local_cluster.client_env(settings))
    return settings


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``inhouse`` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
        code: int = args.handler(settings, args)
        return code
    except InhouseError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
