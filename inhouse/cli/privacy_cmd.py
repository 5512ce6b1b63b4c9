"""``inhouse privacy``: budgets, the non-DP exemption, refunds, the spend report and audits.

::

    inhouse privacy budget set breast_cancer --epsilon 3 --delta 1e-5
    inhouse privacy budget show
    inhouse privacy allow-non-dp breast_cancer --reason "synthetic copy, no real patients"
    inhouse privacy refund 7 --reason "crashed before its first step"
    inhouse privacy report breast_cancer --json
    inhouse privacy audit breast_cancer --version 3

Changing budgets, exemptions and refunds needs ``privacy:admin`` on the data set; reading the
ledger and auditing need ``data:read`` on it. As for every command, with ``$INHOUSE_TOKEN``
set the token must hold the permission; without it the local owner of the state directory
acts, and each change is audited under that name.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from inhouse.cli.auth import authorize
from inhouse.cli.parser import leaf
from inhouse.config import Settings
from inhouse.errors import InvalidInputError

Handler = Callable[[Settings, argparse.Namespace], int]


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``privacy`` and its sub-commands on the ``inhouse`` sub-parsers; returns it.

    Each leaf sets ``handler(settings, args) -> exit code``.
    """
    help_text = "differential-privacy budgets, the ledger of DP runs, membership audits"
    privacy: argparse.ArgumentParser = commands.add_parser(
        "privacy", help=help_text, description=help_text
    )
    acts = privacy.add_subparsers(dest="privacy_action", required=True, metavar="ACTION")

    budget = acts.add_parser("budget", help="set or show data sets' (ε, δ) budgets")
    budget_acts = budget.add_subparsers(dest="budget_action", required=True, metavar="ACTION")
    set_ = leaf(budget_acts, "set", cmd_budget_set, "set a data set's budget (admin)")
    set_.add_argument("dataset", help="data set name")
    set_.add_argument("--epsilon", type=_float, required=True, help="total ε the data set allows")
    set_.add_argument(
        "--delta", type=_float, required=True, help="δ every run is accounted at (< 1/rows)"
    )
    set_.add_argument(
        "--accountant",
        choices=["prv", "rdp"],
        default="prv",
        help="how runs compose: prv (tight, default) or rdp",
    )
    show = leaf(budget_acts, "show", cmd_budget_show, "budgets with what is spent and left")
    show.add_argument("dataset", nargs="?", help="one data set (default: all)")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")

    allow = leaf(
        acts,
        "allow-non-dp",
        cmd_allow_non_dp,
        "let non-DP training use a budgeted data set (admin)",
    )
    allow.add_argument("dataset", help="data set name")
    allow.add_argument("--reason", help="why (recorded with every such run; required)")
    allow.add_argument("--revoke", action="store_true", help="withdraw the exemption instead")

    refund = leaf(acts, "refund", cmd_refund, "stop counting a reserved or failed charge (admin)")
    refund.add_argument("charge_id", type=int, metavar="CHARGE-ID", help="id from the report")
    refund.add_argument("--reason", required=True, help="why (recorded)")

    report = leaf(acts, "report", cmd_report, "per data set: spent, by which versions, left")
    report.add_argument("dataset", nargs="?", help="one data set (default: all)")
    report.add_argument("--json", action="store_true", help="print JSON instead of tables")

    audit = leaf(
        acts,
        "audit",
        cmd_audit,
        "membership-inference attack on a version, next to its ε and a non-DP model",
    )
    audit.add_argument("model", help="model name")
    audit.add_argument("--version", default="champion", help="number, alias or 'latest'")
    audit.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    audit.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return privacy


def _ledger(settings: Settings) -> Any:
    from inhouse import services
    from inhouse.privacy import PrivacyLedger

    return PrivacyLedger(services.engine(settings))


def _reports(settings: Settings, dataset: str | None, detail: str) -> list[Any]:
    ledger = _ledger(settings)
    reports = ledger.report(dataset)
    for report in reports:
        authorize(settings, action="data:read", resource=report.dataset, detail=detail)
    return list(reports)


def cmd_budget_set(settings: Settings, args: argparse.Namespace) -> int:
    actor = authorize(
        settings,
        action="privacy:admin",
        resource=args.dataset,
        detail=f"budget set epsilon={args.epsilon} delta={args.delta} {args.accountant}",
    )
    ledger = _ledger(settings)
    budget = ledger.set_budget(
        dataset=args.dataset,
        epsilon=args.epsilon,
        delta=args.delta,
        actor=actor,
        accountant=args.accountant,
    )
    spent = ledger.spent(args.dataset)
    print(
        f"{budget.dataset}: budget ε={budget.epsilon:g} at δ={budget.delta:g} "
        f"({budget.accountant}); spent ε={spent:.2f}, left ε={budget.epsilon - spent:.2f}"
    )
    return 0


def cmd_budget_show(settings: Settings, args: argparse.Namespace) -> int:
    from inhouse.privacy.report import print_budgets

    reports = _reports(settings, args.dataset, "privacy budget show")
    if args.json:
        print(json.dumps([r.to_dict() | {"charges": len(r.charges)} for r in reports], indent=2))
    else:
        print_budgets(reports)
    return 0


def cmd_allow_non_dp(settings: Settings, args: argparse.Namespace) -> int:
    if not args.revoke and not (args.reason or "").strip():
        raise InvalidInputError("say why with --reason: it is recorded with every non-DP run")
    verb = "revoke" if args.revoke else "allow"
    actor = authorize(
        settings,
        action="privacy:admin",
        resource=args.dataset,
        detail=f"{verb} non-DP training: {args.reason or ''}".strip(),
    )
    ledger = _ledger(settings)
    if args.revoke:
        ledger.revoke_non_dp(dataset=args.dataset, actor=actor)
        print(f"{args.dataset}: non-DP training refused again")
    else:
        ledger.allow_non_dp(dataset=args.dataset, actor=actor, reason=args.reason)
        print(f"{args.dataset}: non-DP training allowed by {actor}; each run is recorded")
    return 0


def cmd_refund(settings: Settings, args: argparse.Namespace) -> int:
    ledger = _ledger(settings)
    charge = ledger.charge(args.charge_id)
    actor = authorize(
        settings,
        action="privacy:admin",
        resource=charge.dataset,
        detail=f"refund charge {charge.id}: {args.reason}",
    )
    refunded = ledger.refund(charge.id, actor=actor, reason=args.reason)
    print(
        f"charge {refunded.id} ({refunded.model}, run {refunded.run}) refunded; "
        f"{refunded.dataset} has spent ε={ledger.spent(refunded.dataset):.2f}"
    )
    return 0


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from inhouse.privacy.report import print_report

    reports = _reports(settings, args.dataset, "privacy report")
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
        return 0
    if not reports:
        print("no data set has a budget or a DP run yet")
    for n, report in enumerate(reports):
        if n:
            print()
        print_report(report)
    return 0


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    from inhouse import services
    from inhouse.console import progress
    from inhouse.membership.audit import audit_version
    from inhouse.membership.report import print_audit

    registry = services.registry(settings)
    info = registry.get(args.model, args.version)
    authorize(
        settings,
        action="data:read",
        resource=str(info.lineage.get("dataset") or args.model),
        detail=f"privacy audit {info.model} v{info.version}",
    )
    bar: Any = None

    def on_epoch(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = progress(total=total, desc="training the non-DP reference", unit="epoch")
        bar.update(1)

    try:
        report = audit_version(
            registry=registry,
            engine=services.engine(settings),
            model=args.model,
            ref=str(info.version),
            seed=args.seed,
            progress=on_epoch,
        )
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2)
        print()
    else:
        print_audit(report)
    return 0
