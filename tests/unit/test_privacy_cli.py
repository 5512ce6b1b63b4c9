"""``inhouse privacy ...`` handlers on a real state directory: budgets, refunds, report, audit."""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
from opacus import PrivacyEngine
from torch.utils.data import DataLoader, TensorDataset

from inhouse import services
from inhouse.cli.auth import local_actor
from inhouse.cli.privacy_cmd import add_parser as add_privacy_commands
from inhouse.config import Settings, load_settings
from inhouse.data import read_rows, seed
from inhouse.errors import InvalidInputError, PermissionDeniedError
from inhouse.kinds import register_module
from inhouse.models import MLPSpec, build_mlp
from inhouse.privacy import Mechanism, PrivacyLedger
from inhouse.training import train_one_epoch

DATASET = "breast_cancer"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("INHOUSE_TOKEN", raising=False)
    loaded = load_settings(home=str(tmp_path), security={"encrypt_at_rest": False})
    seed(services.engine(loaded), DATASET)
    return loaded


def _run(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="inhouse")
    add_privacy_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["privacy", *argv])
    code: int = args.handler(settings, args)
    return code


def _report(settings: Settings, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert _run(settings, "report", DATASET, "--json") == 0
    [report] = json.loads(capsys.readouterr().out)
    return dict(report)


def test_budget_refund_exemption_and_report(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        _run(
            settings,
            "budget",
            "set",
            DATASET,
            "--epsilon",
            "3",
            "--delta",
            "1e-5",
            "--accountant",
            "rdp",
        )
        == 0
    )
    assert "budget ε=3 at δ=1e-05 (rdp); spent ε=0.00" in capsys.readouterr().out
    with pytest.raises(InvalidInputError):
        _run(settings, "budget", "set", DATASET, "--epsilon", "0", "--delta", "1e-5")
    ledger = PrivacyLedger(services.engine(settings))
    assert ledger.budget(DATASET).set_by == local_actor()  # type: ignore[union-attr]

    charge = ledger.reserve(
        dataset=DATASET,
        first_id=1,
        up_to_id=455,
        mechanism=Mechanism(2.0, 0.07, 100),
        accountant="rdp",
        clipping=1.0,
        model="cancer",
        run="r1",
    )
    ledger.settle(charge.id, steps=30, version=None, status="failed")
    report = _report(settings, capsys)
    assert report["budget"]["epsilon"] == 3.0 and report["spent_epsilon"] > 0
    assert [c["status"] for c in report["charges"]] == ["failed"]

    assert _run(settings, "report", DATASET) == 0
    text = capsys.readouterr().out
    assert f"data set {DATASET}: budget ε=3.00" in text and "30/100" in text and "failed" in text
    assert _run(settings, "refund", str(charge.id), "--reason", "crashed") == 0
    assert "refunded" in capsys.readouterr().out
    assert _report(settings, capsys)["spent_epsilon"] == 0.0

    with pytest.raises(InvalidInputError, match="--reason"):
        _run(settings, "allow-non-dp", DATASET)
    assert _run(settings, "allow-non-dp", DATASET, "--reason", "de-identified copy") == 0
    ledger.check_non_dp(dataset=DATASET, model="cancer", run="plain-1")
    assert [r["run"] for r in _report(settings, capsys)["non_dp_runs"]] == ["plain-1"]
    assert _run(settings, "allow-non-dp", DATASET, "--revoke") == 0
    with pytest.raises(PermissionDeniedError):
        ledger.check_non_dp(dataset=DATASET, model="cancer", run="plain-2")

    capsys.readouterr()
    assert _run(settings, "budget", "show") == 0
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith(DATASET)]
    assert row.split()[1:5] == ["3.00", "1e-05", "rdp", "0.00"]


def test_changes_need_privacy_admin_when_a_token_is_used(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    access = services.access(settings)
    access.create_principal(name="ana", roles=["analyst"], actor="test")
    token = access.issue_token(principal="ana", expires_in=timedelta(hours=1)).token
    monkeypatch.setenv("INHOUSE_TOKEN", token)
    with pytest.raises(PermissionDeniedError):
        _run(settings, "budget", "set", DATASET, "--epsilon", "3", "--delta", "1e-5")
    assert _run(settings, "budget", "show", "--json") == 0  # analysts read data sets
    assert json.loads(capsys.readouterr().out)[0]["budget"] is None
    access.create_principal(name="root", roles=["admin"], actor="test")
    monkeypatch.setenv(
        "INHOUSE_TOKEN", access.issue_token(principal="root", expires_in=timedelta(hours=1)).token
    )
    assert _run(settings, "budget", "set", DATASET, "--epsilon", "3", "--delta", "1e-5") == 0
    assert PrivacyLedger(services.engine(settings)).budget(DATASET).set_by == "root"  # type: ignore[union-attr]


def test_audit_prints_the_attack_beside_epsilon_and_a_trained_reference(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = services.engine(settings)
    train = read_rows(engine, DATASET, split="train")
    spec = MLPSpec(input_dim=30, hidden=[32], num_classes=2).model_dump()
    ledger = PrivacyLedger(engine)
    ledger.set_budget(dataset=DATASET, epsilon=10.0, delta=1e-5, actor="admin", accountant="rdp")
    steps, rate = 3 * 15, 32 / len(train)
    charge = ledger.reserve(
        dataset=DATASET,
        first_id=1,
        up_to_id=int(train.ids.max()),
        mechanism=Mechanism(2.0, rate, steps),
        accountant="rdp",
        clipping=1.0,
        model="cancer",
        run="dp",
    )
    torch.manual_seed(0)
    model = build_mlp(MLPSpec.model_validate(spec))
    # No scaling fitted on the rows (that would release their statistics without noise).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        private, optimizer, loader = PrivacyEngine(accountant="rdp").make_private(
            module=model,
            optimizer=torch.optim.Adam(model.parameters(), lr=3e-3),
            data_loader=DataLoader(TensorDataset(train.x, train.y), batch_size=32),
            noise_multiplier=2.0,
            max_grad_norm=1.0,
        )
        for _ in range(3):
            train_one_epoch(private, loader, optimizer)
    lineage = {
        "dataset": DATASET,
        "rows": {"first_id": 1, "up_to_id": int(train.ids.max())},
        "config": {"epochs": 3, "batch_size": 32, "lr": 3e-3, "seed": 0},
        "privacy": charge.lineage(),
    }
    registry = services.registry(settings)
    version = register_module(
        registry, "cancer", module=model, spec=spec, metrics={}, lineage=lineage
    )
    ledger.settle(charge.id, steps=steps, version=version.version)

    capsys.readouterr()
    assert _run(settings, "audit", "cancer", "--version", "latest") == 0
    captured = capsys.readouterr()
    assert f"cancer v{version.version} on {DATASET}: ε={charge.epsilon:.2f}" in captured.out
    assert "non-DP (trained now)" in captured.out and "DP bound" in captured.out
    assert "training the non-DP reference" in captured.err  # the progress bar
    assert _run(settings, "audit", "cancer", "--version", "latest", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dp"] and report["epsilon"] == charge.epsilon
    assert report["attack"]["members"] == report["attack"]["non_members"] == 114
    for attack in (report["attack"], report["reference"]["attack"]):
        for key in ("loss_auc", "lira_auc", "loss_tpr_at_1pct_fpr", "lira_tpr_at_1pct_fpr"):
            assert 0.0 <= attack[key] <= 1.0
