"""Statistics of training rows stay in the encrypted lineage file (issue #16, finding Low 10).

Each test fails on the code before the fix: the whole lineage (global importance included) was
written to the plaintext ``model_versions.lineage`` column and never stripped from old rows,
``inhouse models show`` printed it to anyone, and the served explainer answered
``baseline: "mean"`` of a non-DP version with the feature means of its training rows.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sqlalchemy import select

from inhouse import services
from inhouse.cli import main
from inhouse.config import Settings, load_settings
from inhouse.db import session_scope
from inhouse.errors import PermissionDeniedError
from inhouse.explain.request import mean_is_public, run_explanation, server_limits
from inhouse.kinds import build_model, register_module
from inhouse.models import MLPSpec
from inhouse.registry import ModelVersion, Registry
from inhouse.registry.records import ModelVersionRecord
from inhouse.schema import get_engine

SPEC = MLPSpec(input_dim=4, hidden=[8], num_classes=3).model_dump()
IMPORTANCE = {"feature_names": ["a", "b", "c", "d"], "importance": [0.4, 0.3, 0.2, 0.1]}
LINEAGE = {
    "dataset": "tiny",
    "rows": {"up_to_id": 40, "train_rows": 40},
    "privacy": {"dp": False},
    "global_importance": {**IMPORTANCE, "n_background": 40, "metadata": {}},
    "importance_vs_champion": {"spearman": 0.9, "top_k_overlap": 1.0, "k": 2},
}
TRAINING_MEAN = [11.0, 22.0, 33.0, 44.0]


def _fitted_module() -> torch.nn.Module:
    """An MLP whose Standardize layer holds the mean of (made-up) training rows."""
    torch.manual_seed(0)
    module = build_model(SPEC)
    rows = torch.tensor(TRAINING_MEAN) + torch.randn(40, 4)
    module[0].fit(rows - rows.mean(0) + torch.tensor(TRAINING_MEAN))
    return module.eval()


def _sql_lineages(engine: Any) -> list[dict[str, Any]]:
    with session_scope(engine) as session:
        return [dict(v) for v in session.scalars(select(ModelVersionRecord.lineage))]


def _settings(home: Path) -> Settings:
    return load_settings(home=str(home))


def test_sql_row_holds_no_statistics_of_training_rows(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    registry = services.registry(settings)
    info = register_module(
        registry,
        "tiny",
        module=_fitted_module(),
        spec=SPEC,
        metrics={"test_accuracy": 0.9},
        lineage=LINEAGE,
    )
    (row,) = _sql_lineages(registry.engine)
    assert "global_importance" not in row and "importance_vs_champion" not in row
    assert "0.4" not in json.dumps(row)
    assert row == {k: LINEAGE[k] for k in ("dataset", "rows", "privacy")}
    assert info.lineage == row  # what callers see without asking for more
    assert info.encrypted and registry.full_lineage(info) == LINEAGE  # the encrypted file


def test_old_plaintext_rows_are_stripped_when_the_registry_opens(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    engine = get_engine(settings.db_url)
    with session_scope(engine) as session:  # a row as the code before the fix wrote it
        session.add(
            ModelVersionRecord(
                model="tiny",
                version=1,
                path="tiny/v1",
                sha256="0" * 64,
                size_bytes=1,
                spec=SPEC,
                metrics={},
                lineage=LINEAGE,
                format="safetensors",
                encrypted=True,
            )
        )
    Registry(engine=engine, root=settings.registry_dir, keyring=None)
    (row,) = _sql_lineages(engine)
    assert sorted(row) == ["dataset", "privacy", "rows"]


def _principal_token(settings: Settings, name: str, roles: list[str]) -> str:
    access = services.access(settings)
    access.create_principal(name=name, kind="service", roles=roles, actor="test")
    issued = access.issue_token(principal=name, expires_in=timedelta(days=1), actor="test")
    return str(issued.token)


def test_models_show_needs_data_read_for_training_statistics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(tmp_path)
    register_module(
        services.registry(settings),
        "tiny",
        module=_fitted_module(),
        spec=SPEC,
        metrics={},
        lineage=LINEAGE,
    )
    home = ["--home", str(tmp_path)]
    monkeypatch.delenv("INHOUSE_TOKEN", raising=False)
    capsys.readouterr()

    assert main([*home, "models", "show", "tiny", "--version", "1"]) == 0
    shown = json.loads(capsys.readouterr().out)["lineage"]
    assert "global_importance" not in shown and "--training-stats" in shown["training_stats"]

    monkeypatch.setenv("INHOUSE_TOKEN", _principal_token(settings, "svc", ["predictor"]))
    code = main([*home, "models", "show", "tiny", "--version", "1", "--training-stats"])
    captured = capsys.readouterr()
    assert code == 2 and "global_importance" not in captured.out
    assert "data:read" in captured.err

    monkeypatch.setenv("INHOUSE_TOKEN", _principal_token(settings, "ana", ["analyst"]))
    assert main([*home, "models", "show", "tiny", "--version", "1", "--training-stats"]) == 0
    assert json.loads(capsys.readouterr().out)["lineage"]["global_importance"]["importance"] == [
        0.4,
        0.3,
        0.2,
        0.1,
    ]


def _served_explain(module: torch.nn.Module, lineage: dict[str, Any]) -> dict[str, Any]:
    """What the served explainer sidecar answers (its kind's ``explain``), without a Ray cluster."""
    from inhouse.kinds import kind_named
    from inhouse.kinds.tabular.serving import ExplainCall, TabularModel

    info = ModelVersion(
        model="tiny",
        version=1,
        created_at=None,  # type: ignore[arg-type]
        path=Path("."),
        format="safetensors",
        encrypted=True,
        sha256="",
        size_bytes=0,
        spec=SPEC,
        metrics={},
        lineage=lineage,
    )
    call = ExplainCall(
        np.zeros((1, 4), dtype=np.float32), "shap", None, {"baseline": "mean", "n_samples": 30}
    )
    serving = kind_named("tabular").serving
    return serving.explain(TabularModel(info, module), call, max_instances=1024)


def test_served_mean_baseline_of_a_non_dp_version_is_refused() -> None:
    module = _fitted_module()
    with pytest.raises(PermissionDeniedError, match="training rows") as refused:
        _served_explain(module, {"dataset": "tiny", "privacy": {"dp": False}})
    assert refused.value.status_code == 403 and "\n" not in refused.value.message
    with pytest.raises(PermissionDeniedError):  # the default of the shared function too
        run_explanation(
            module,
            np.zeros((1, 4), dtype=np.float32),
            method="shap",
            target=None,
            options={"baseline": "mean"},
            feature_names=None,
            limits=server_limits(),
        )


def test_served_mean_baseline_of_a_dp_version_is_its_public_bounds_midpoint() -> None:
    module = build_model(SPEC).eval()
    module[0].set_bounds(torch.zeros(4), torch.full((4,), 16.0))
    lineage = {
        "privacy": {"dp": True, "epsilon": 1.0, "feature_scaling": "published bounds of digits"}
    }
    assert mean_is_public(lineage) and not mean_is_public({"privacy": {"dp": False}})
    assert not mean_is_public({"privacy": {"dp": True, "trials_charged": 2}})  # no bounds
    answer = _served_explain(module, lineage)
    assert answer["baseline_kind"] == "mean"
    assert answer["explanations"][0]["baseline"] == [8.0, 8.0, 8.0, 8.0]
