"""What users see on the terminal: steps with timings, progress bars, tables, job markers."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from tqdm import tqdm

RESULT_MARKER = "INHOUSE_RESULT "  # a job's last line: its JSON summary
EPOCH_MARKER = "INHOUSE_EPOCH "  # one line per epoch: the metrics, for progress bars


def emit(marker: str, payload: dict[str, Any]) -> None:
    """Print a machine-readable line that the CLI picks out of a job's logs."""
    print(marker + json.dumps(payload, default=str), flush=True)


@contextmanager
def step(title: str) -> Iterator[None]:
    """``==> title ... done (1.2 s)`` around a block."""
    print(f"==> {title} ...", flush=True)
    started = time.perf_counter()
    yield
    print(f"    done ({time.perf_counter() - started:.1f} s)", flush=True)


def progress(*, total: int, desc: str, unit: str) -> tqdm:
    """A progress bar on stderr."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, out: TextIO | None = None
) -> None:
    """A plain aligned table. Control characters are shown as ``?``: cells may come from clients."""
    stream = out or sys.stdout
    cells = [[str(h) for h in headers]] + [
        ["".join(ch if ch.isprintable() else "?" for ch in str(c)) for c in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=stream)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=stream)
    if not rows:
        print("(none)", file=stream)
