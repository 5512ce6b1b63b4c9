"""Terminal tables of the privacy ledger and of membership-inference audits."""

from __future__ import annotations

from typing import TextIO

from inhouse.console import print_table
from inhouse.privacy.attack import AttackResult
from inhouse.privacy.audit import AuditReport
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


def _attack_rows(label: str, attack: AttackResult) -> list[list[object]]:
    return [
        [label, "loss threshold", f"{attack.loss_auc:.3f}", f"{attack.loss_tpr_at_1pct_fpr:.3f}"],
        [label, "LiRA (offline)", f"{attack.lira_auc:.3f}", f"{attack.lira_tpr_at_1pct_fpr:.3f}"],
    ]


def print_audit(report: AuditReport, *, out: TextIO | None = None) -> None:
    """The audited version's attacks, the DP bound and the non-DP reference side by side."""
    attack = report.attack
    privacy = (
        f"ε={report.epsilon:.2f} (δ={report.delta:g}, {report.accountant})"
        if report.dp
        else "non-DP (no ε)"
    )
    print(
        f"{report.model} v{report.version} on {report.dataset}: {privacy}; "
        f"{attack.members} members vs {attack.non_members} held-out rows; accuracy "
        f"{attack.member_accuracy:.3f} on members, {attack.non_member_accuracy:.3f} held out",
        file=out,
    )
    rows = _attack_rows(f"v{report.version}", attack)
    if report.bound_auc is not None and report.bound_tpr_at_1pct_fpr is not None:
        rows.append(
            [
                f"any attack at ε={report.epsilon:.2f}",
                "DP bound",
                f"<= {report.bound_auc:.3f}",
                f"<= {report.bound_tpr_at_1pct_fpr:.3f}",
            ]
        )
    reference = report.reference
    if reference is not None:
        label = (
            f"non-DP v{reference.version}"
            if reference.version is not None
            else "non-DP (trained now)"
        )
        rows += _attack_rows(label, reference.attack)
    print_table(["model", "attack", "AUC", "TPR@1%FPR"], rows, out=out)
    print("AUC 0.5 is chance: the attacker cannot tell members from held-out rows.", file=out)
