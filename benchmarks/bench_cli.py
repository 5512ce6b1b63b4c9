"""Command-line start-up: lazy command groups vs every group loaded before parsing.

Each side is a fresh interpreter timed from the outside (wall clock of the child process), in
turns (ours, baseline, baseline, ours, ...) so that load drift hits both alike; the median is
reported. Ours is ``python -m inhouse.cli ARGS`` as a user types it (the console script does
the same). The baseline is the same ``main(ARGS)`` after building the parser with every command
group loaded first (``commands_of(parser).load_all()``): what the CLI paid before its groups
were loaded lazily. ``python -c pass`` (the interpreter alone) is in the notes.

- ``--help``: lists every group without importing one. Target: under 1 s.
- ``models list``: reads the registry's SQL tables (an empty SQLite database in a temporary
  home), without torch or Ray. Target: under 1 s.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from inhouse.benchmarks.report import row

NAME = "cli"
REPO_ROOT = Path(__file__).resolve().parents[1]
EAGER = (
    "import sys\n"
    "from inhouse.cli import main\n"
    "from inhouse.cli.parser import build_parser, commands_of\n"
    "commands_of(build_parser()).load_all()\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _wall(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from starting ``python argv`` to its exit (it must succeed)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *argv], cwd=REPO_ROOT, env=env, capture_output=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"python {' '.join(argv)} exited {done.returncode}: {tail[0]}")
    return seconds


def _compare(args: list[str], env: dict[str, str], repeats: int) -> tuple[float, float]:
    """Median wall seconds of ``inhouse ARGS``, lazy vs eager, taking turns (ABBA)."""
    lazy: list[float] = []
    eager: list[float] = []
    for i in range(repeats):
        order = [(lazy, ["-m", "inhouse.cli"]), (eager, ["-c", EAGER])]
        for times, prefix in order if i % 2 == 0 else order[::-1]:
            times.append(_wall([*prefix, *args], env))
    return statistics.median(lazy), statistics.median(eager)


def run(quick: bool) -> list[dict[str, Any]]:
    repeats = 3 if quick else 5
    with tempfile.TemporaryDirectory(prefix="inhouse-bench-cli-") as name:
        home = Path(name) / "home"
        env = {**os.environ, "INHOUSE_HOME": str(home)}
        env.pop("INHOUSE_TOKEN", None)
        _wall(["-m", "inhouse.cli", "models", "list"], env)  # create the database, warm caches
        bare = statistics.median(_wall(["-c", "pass"], env) for _ in range(repeats))
        rows = []
        for label, args in (
            ("inhouse --help", ["--help"]),
            ("inhouse models list", ["models", "list"]),
        ):
            ours, baseline = _compare(args, env, repeats)
            rows.append(
                row(
                    NAME,
                    f"`{label}` wall s, lazy groups vs all groups loaded first",
                    ours,
                    baseline,
                    target=("ours", "<=", 1.0, "s"),
                    notes=f"median of {repeats} fresh interpreters each, in turns; lazy "
                    f"{ours:.2f} s, eager {baseline:.2f} s, `python -c pass` {bare:.2f} s "
                    f"(lazy is {ours / bare:.0f}x the bare interpreter)",
                )
            )
        return rows
