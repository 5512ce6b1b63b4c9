"""The terminal table of a membership-inference audit, beside the DP bound."""

from __future__ import annotations

from typing import TextIO

from inhouse.console import print_table
from inhouse.membership.attack import AttackResult
from inhouse.membership.audit import AuditReport


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
