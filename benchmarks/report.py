"""Result rows (ours vs a baseline, a target, met?) and their markdown rendering."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# (on "ours" | "ratio" | "delta" | "both", "<=" | ">=" | "==", limit, unit)
Target = tuple[str, str, float, str]
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
}


def row(
    benchmark: str,
    metric: str,
    ours: float,
    baseline: float | None,
    *,
    target: Target | None = None,
    notes: str = "",
) -> dict[str, Any]:
    """One table row: ours vs a baseline measured in the same run; ``met`` is None without target.

    ``target=("ratio", "<=", 1.05, "")`` checks ours/baseline; ``("ours", "<=", 2.0, "ms")``
    checks our value alone (e.g. an absolute latency budget); ``"delta"`` checks
    ours - baseline (e.g. accuracy points lost); ``"both"`` checks both values.
    """
    ratio = ours / baseline if baseline not in (None, 0) else None
    met: bool | None = None
    target_text = ""
    if target is not None:
        on, op, limit, unit = target
        delta = None if baseline is None else ours - baseline
        values = {"ratio": [ratio], "ours": [ours], "delta": [delta], "both": [ours, baseline]}[on]
        met = all(v is not None and _OPS[op](v, limit) for v in values)
        target_text = f"{on} {op} {limit:g}{(' ' + unit) if unit else ''}"
    return {
        "benchmark": benchmark,
        "metric": metric,
        "ours": float(ours),
        "baseline": None if baseline is None else float(baseline),
        "ratio": ratio,
        "target": target_text,
        "met": met,
        "notes": notes,
    }


COLUMNS = ("benchmark", "metric", "ours", "baseline", "ratio", "target", "met?")


def number(value: float | None) -> str:
    """A compact rendering: 3 significant digits, thousands separators for big values."""
    if value is None:
        return "—"
    magnitude = abs(value)
    if magnitude >= 10_000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 1 or magnitude == 0:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _met(value: bool | None) -> str:
    return "—" if value is None else ("yes" if value else "**NO**")


def markdown(rows: list[dict[str, Any]]) -> str:
    """One markdown table row per result row, in the order given."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        cells = [
            r["benchmark"],
            r["metric"],
            "ERROR" if r.get("error") else number(r["ours"]),
            number(r["baseline"]),
            number(r["ratio"]),
            r["target"] or "",
            _met(r["met"]),
        ]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def notes_list(rows: list[dict[str, Any]]) -> str:
    """The notes of each row (what the baseline is, sample sizes, side measurements)."""
    lines = ["Notes:"]
    for r in rows:
        if r.get("notes"):
            lines.append(f"- {r['benchmark']} / {r['metric']}: {r['notes']}")
    return "\n".join(lines) + "\n" if len(lines) > 1 else ""


def error_row(benchmark: str, error: str) -> dict[str, Any]:
    """The row recorded for a benchmark that did not run to the end."""
    return {
        "benchmark": benchmark,
        "metric": "did not complete",
        "ours": None,
        "baseline": None,
        "ratio": None,
        "target": "runs",
        "met": False,
        "notes": error,
        "error": True,
    }
