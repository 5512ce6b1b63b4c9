"""Ray Train DDP on the shared cluster, reading from PostgreSQL; resume after a worker dies."""

from __future__ import annotations

from pathlib import Path

import pytest

from inhouse import services
from inhouse.config import Settings, load_settings
from inhouse.data import seed
from inhouse.jobs import train
from inhouse.schema import get_engine

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _settings(base: Settings, db_url: str, **train_cfg: object) -> Settings:
    return load_settings(
        home=str(base.home), database_url=db_url, train={"model": "digits_pg", **train_cfg}
    )


def test_ddp_training_from_postgres_reaches_target_and_registers(
    ray_cluster: Settings, pg_url: str
) -> None:
    settings = _settings(ray_cluster, pg_url)
    seed(get_engine(pg_url), "digits")
    summary = train.run(settings, settings.train)
    assert summary["test_accuracy"] >= 0.95
    registry = services.registry(settings)
    info = registry.get("digits_pg", str(summary["version"]))  # the float version
    champion = registry.get("digits_pg")  # served: the compressed one, which passed the gate
    assert summary["compressed"]["gate_passed"] and champion.format == "compressed"
    assert champion.version == summary["served_version"] == summary["compressed"]["version"]
    assert champion.lineage["parent"]["version"] == info.version
    assert champion.metrics["test_accuracy"] >= 0.95
    assert info.lineage["rows"]["train_rows"] == 1437 and info.lineage["dataset"] == "digits"
    assert info.metrics["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    full = registry.full_lineage(info)  # statistics of rows: in the encrypted file only
    importance = full["global_importance"]
    assert len(importance["feature_names"]) == 64 and "importance_vs_champion" not in full
    assert "global_importance" not in info.lineage
    events = list(Path(summary["run_dir"], "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 1000  # scalars and histograms


def _plaintext_tensor_files(root: Path) -> list[Path]:
    """Files that parse as a safetensors header: plaintext weights on disk."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file() or path.stat().st_size < 16:
            continue
        head = path.read_bytes()[:4096]
        size = int.from_bytes(head[:8], "little")
        if 0 < size < 10**8 and head[8:9] == b"{" and b'"dtype"' in head[8 : 8 + size]:
            found.append(path)
    return found


def test_no_plaintext_weights_left_on_disk(ray_cluster: Settings) -> None:
    """After the training runs above: checkpoints and registry hold only sealed tensors."""
    assert ray_cluster.security.encrypt_at_rest
    checkpoints = list(ray_cluster.runs_dir.rglob("model.safetensors.enc"))
    assert checkpoints, "the runs wrote encrypted checkpoints"
    assert list(ray_cluster.registry_dir.rglob("weights.safetensors.enc"))
    for root in (ray_cluster.runs_dir, ray_cluster.registry_dir):
        assert _plaintext_tensor_files(root) == []


def test_a_killed_worker_resumes_from_its_last_checkpoint(
    ray_cluster: Settings, pg_url: str
) -> None:
    settings = _settings(ray_cluster, pg_url, epochs=4, promote=False)
    seed(get_engine(pg_url), "digits")
    summary = train.run(settings, settings.train, crash_at_epoch=2)
    marker = Path(summary["run_dir"], "crash-marker")
    assert marker.exists()  # a worker process really died
    registry = services.registry(settings)
    info = registry.get("digits_pg", str(summary["version"]))
    assert info.metrics["resumed_from_epoch"] == 2  # from the last checkpoint, not from scratch
    assert summary["test_accuracy"] >= 0.93
    comparison = registry.full_lineage(info)["importance_vs_champion"]  # vs the first champion
    assert -1.0 <= comparison["spearman"] <= 1.0 and comparison["k"] == 5


def test_training_on_a_registered_table_then_a_changed_row_stops_the_next(
    ray_cluster: Settings, pg_url: str
) -> None:
    """``inhouse train`` reads a user's PostgreSQL table in place (Ray Train workers too); a
    row it consumed that changes afterwards stops the next training before a row is read."""
    from sqlalchemy import text

    from inhouse.data import read_rows
    from inhouse.data.external import register_table
    from inhouse.errors import DataChangedError

    engine = get_engine(pg_url)
    seed(engine, "digits")
    digits = read_rows(engine, "digits")
    columns = [f"p{i}" for i in range(64)]
    with engine.begin() as conn:
        cols = ", ".join(f"{c} REAL" for c in columns)
        conn.execute(text(f"CREATE TABLE scans (scan_id BIGINT PRIMARY KEY, digit INT, {cols})"))
        conn.execute(
            text(
                f"INSERT INTO scans (scan_id, digit, {', '.join(columns)}) "
                f"VALUES (:k, :y, {', '.join(':' + c for c in columns)})"
            ),
            [
                {"k": 10 * k, "y": int(y), **dict(zip(columns, x, strict=True))}
                for k, (x, y) in enumerate(zip(digits.x.tolist(), digits.y.tolist()), start=1)
            ],
        )
    register_table(engine, name="scans", table="scans", key="scan_id", label="digit")
    settings = load_settings(
        home=str(ray_cluster.home),
        database_url=pg_url,
        train={"model": "scans", "dataset": "scans", "epochs": 3},
    )
    summary = train.run(settings, settings.train)
    info = services.registry(settings).get("scans", str(summary["version"]))
    assert info.lineage["dataset"] == "scans" and info.lineage["rows"]["up_to_id"] == 1797
    assert summary["test_accuracy"] >= 0.8
    with engine.begin() as conn:
        conn.execute(text("UPDATE scans SET digit = (digit + 1) % 10 WHERE scan_id = 50"))
    with pytest.raises(DataChangedError, match=r"'scans' changed in consumed rows seq 1\.\.1797"):
        train.run(settings, settings.train)
