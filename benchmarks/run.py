"""``make bench``: run the benchmarks, write results/latest.json + latest.md, print the table.

Each benchmark runs in its own child process (``--child``), so a Ray cluster that dies under
it (e.g. someone's ``ray stop --force`` on a shared machine) fails that benchmark only; it is
retried once, and a child that overruns ``--timeout`` is stopped with its process group.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import import_module, metadata
from pathlib import Path
from typing import Any

from inhouse.atomic import atomic_write_bytes
from inhouse.benchmarks.report import error_row, markdown, notes_list

REPO_ROOT = Path(__file__).resolve().parents[1]
FIRST = ("train", "serve", "compress", "explain")


def discover() -> tuple[str, ...]:
    """Every ``benchmarks/bench_<name>.py``: the core four first, then the others by name."""
    found = sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))
    return tuple([n for n in FIRST if n in found] + [n for n in found if n not in FIRST])


BENCHMARKS = discover()
LOG_DIR = Path(tempfile.gettempdir()) / "inhouse-bench-logs"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inhouse.benchmarks.run",
        description="Side-by-side benchmarks of inhouse vs a baseline measured in the same run "
        "on the same machine. Writes benchmarks/results/latest.json and latest.md and prints "
        "the table. Run from the repository root.",
    )
    parser.add_argument("--only", nargs="+", action="extend", choices=BENCHMARKS,
                        metavar="NAME", help=f"run only these benchmarks ({', '.join(BENCHMARKS)})"
                        "; repeatable. Default: all")
    parser.add_argument("--quick", action="store_true",
                        help="fewer epochs, requests and repeats (a smoke run, ~2 min); "
                        "numbers are noisier")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "benchmarks" / "results",
                        help="where latest.json and latest.md go (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                        help="stop a benchmark that runs longer than this (default: %(default)s)")
    parser.add_argument("--retries", type=int, default=1,
                        help="re-runs of a benchmark that crashed (default: %(default)s)")
    parser.add_argument("--in-process", action="store_true",
                        help="run benchmarks in this process, not in children (debugging; a "
                        "dying Ray cluster then ends the whole run)")
    parser.add_argument("--fail-on-miss", action="store_true",
                        help="exit with status 1 when a target is not met (default: only when "
                        "a benchmark fails to run)")
    parser.add_argument("--child", choices=BENCHMARKS, help="internal: run one benchmark and "
                        "write its rows to --child-output")
    parser.add_argument("--child-output", type=Path, help="internal: see --child")
    return parser


def _run_module(name: str, quick: bool) -> list[dict[str, Any]]:
    from inhouse.benchmarks.common import remove_token_dir

    try:
        rows: list[dict[str, Any]] = import_module(f"benchmarks.bench_{name}").run(quick)
    finally:
        remove_token_dir()
    return rows


def _child_main(args: argparse.Namespace) -> int:
    # SIGTERM from the parent's timeout becomes SystemExit, so ray/serve shutdowns in
    # `finally` blocks still run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows = _run_module(args.child, args.quick)
    atomic_write_bytes(args.child_output, json.dumps(rows).encode())
    return 0


def _hermetic_env(tmp: Path) -> dict[str, str]:
    """The environment of a child: none of the user's INHOUSE_* settings (a database URL
    there would receive the benchmark's models), no RAY_ADDRESS, an empty settings file."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("INHOUSE_") and k != "RAY_ADDRESS"}
    (tmp / "inhouse.yaml").write_text("")
    env["INHOUSE_CONFIG"] = str(tmp / "inhouse.yaml")
    return env


def _run_child(name: str, args: argparse.Namespace, log: Path) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="inhouse-bench-") as tmp:
        out = Path(tmp) / "rows.json"
        command = [sys.executable, "-m", "inhouse.benchmarks.run", "--child", name,
                   "--child-output", str(out)] + (["--quick"] if args.quick else [])
        with open(log, "ab") as handle:
            handle.write(f"\n=== {datetime.now(timezone.utc).isoformat()} {command}\n".encode())
            handle.flush()
            proc = subprocess.Popen(command, cwd=REPO_ROOT, env=_hermetic_env(Path(tmp)),
                                    stdout=handle, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                code = proc.wait(timeout=args.timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                raise RuntimeError(f"timed out after {args.timeout:.0f} s") from None
        if code != 0 or not out.exists():
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"exit status {code}: {tail[0][:300]}")
        return list(json.loads(out.read_text()))


def _machine() -> dict[str, Any]:
    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()

    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_at_start": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "git_commit": git("rev-parse", "--short", "HEAD") or None,
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        **{p: version(p) for p in ("torch", "ray", "captum", "transformers", "fastapi")},
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        return _child_main(args)
    names = [n for n in BENCHMARKS if n in (args.only or BENCHMARKS)]
    machine, started = _machine(), time.perf_counter()
    rows: list[dict[str, Any]] = []
    timings: dict[str, dict[str, Any]] = {}
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name}: running{' (quick)' if args.quick else ''}...",
              flush=True)
        begun, error, attempts = time.perf_counter(), "", 0
        log = LOG_DIR / f"{name}.log"
        result: list[dict[str, Any]] = []
        while attempts <= args.retries:
            attempts += 1
            try:
                result = (_run_module(name, args.quick) if args.in_process
                          else _run_child(name, args, log))
                error = ""
                break
            except Exception as exc:  # noqa: BLE001 - one benchmark's failure is a table row
                error = f"{type(exc).__name__}: {exc}"
                print(f"    attempt {attempts} failed: {error} (log: {log})", flush=True)
        seconds = time.perf_counter() - begun
        rows += result or [error_row(name, error)]
        timings[name] = {"seconds": round(seconds, 1), "attempts": attempts, "error": error}
        judged = [r["met"] for r in result if r["met"] is not None]
        print(f"[{i}/{len(names)}] {name}: {'FAILED' if error else 'done'} in {seconds:.1f} s, "
              f"{len(result)} rows, targets met {sum(judged)}/{len(judged)}", flush=True)
    total = time.perf_counter() - started
    machine["load_average_at_end"] = list(os.getloadavg())
    document = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "total_seconds": round(total, 1),
        "machine": machine,
        "benchmarks": timings,
        "rows": rows,
    }
    table = markdown(rows)
    header = (f"# inhouse benchmarks\n\n{document['created']}, {machine['cpu_count']} CPUs, "
              f"torch {machine['torch']}, ray {machine['ray']}, "
              f"{'quick, ' if args.quick else ''}total {total:.0f} s\n\n")
    atomic_write_bytes(args.output_dir / "latest.json", json.dumps(document, indent=2).encode())
    atomic_write_bytes(args.output_dir / "latest.md",
                       (header + table + "\n" + notes_list(rows)).encode())
    print("\n" + table + "\n" + notes_list(rows))
    print(f"total {total:.1f} s; wrote {args.output_dir / 'latest.json'} and latest.md")
    failed = any(t["error"] for t in timings.values())
    missed = any(r["met"] is False for r in rows)
    return 1 if failed or (args.fail_on_miss and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
