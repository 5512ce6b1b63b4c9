"""Terminal tables of the privacy ledger: budgets, spend and charges per data set."""

from __future__ import annotations

from typing import TextIO

from inhouse.console import print_table
from inhouse.privacy.types import DatasetReport


def _eps(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def budget_rows(reports: list[DatasetReport]) -> list[list[object]]:
    """One row per data set: budget, spend, remaining, non-DP exemption."""
    rows: list[list[object]] = []
    for report in reports:
        budget = report.budget
        rows.append(
            [
                report.dataset,
                _eps(budget.epsilon) if budget else "none",
                f"{budget.delta:g}" if budget else "-",
                budget.accountant if budget else "-",
                _eps(report.spent),
                _eps(report.remaining),
                ("allowed" if budget.non_dp_allowed else "refused") if budget else "allowed",
                (budget.set_by or "-") if budget else "-",
            ]
        )
    return rows


BUDGET_HEADERS = ["data set", "ε", "δ", "accountant", "spent ε", "left ε", "non-DP", "set by"]


def print_budgets(reports: list[DatasetReport], *, out: TextIO | None = None) -> None:
    print_table(BUDGET_HEADERS, budget_rows(reports), out=out)


def print_report(report: DatasetReport, *, out: TextIO | None = None) -> None:
    """A data set's budget line, then every charge (by version) and non-DP run."""
    budget = report.budget
    head = f"data set {report.dataset}: "
    if budget is None:
        head += f"no budget; spent ε={report.spent:.2f}"
    else:
        head += (
            f"budget ε={budget.epsilon:.2f} (δ={budget.delta:g}, {budget.accountant}), "
            f"spent ε={report.spent:.2f}, left ε={_eps(report.remaining)}"
        )
        if report.remaining is not None and report.remaining < 0:
            head += " (OVER BUDGET: settled runs ran more steps than reserved)"
    print(head, file=out)
    print_table(
        ["charge", "model", "version", "rows", "run ε", "noise", "q", "steps", "clip", "status"],
        [
            [
                c.id,
                c.model,
                f"v{c.version}" if c.version is not None else "-",
                f"{c.first_id}..{c.up_to_id}",
                f"{c.epsilon:.2f}",
                f"{c.noise_multiplier:g}",
                f"{c.sample_rate:.3g}",
                c.steps if c.steps == c.planned_steps else f"{c.steps}/{c.planned_steps}",
                f"{c.clipping:g}",
                c.status,
            ]
            for c in report.charges
        ],
        out=out,
    )
    if report.non_dp_runs:
        print("non-DP runs let through by the admin's exemption:", file=out)
        print_table(
            ["model", "run", "allowed by", "reason", "at"],
            [
                [r.model, r.run, r.allowed_by or "-", r.reason or "-", f"{r.created_at:%F %T}"]
                for r in report.non_dp_runs
            ],
            out=out,
        )
