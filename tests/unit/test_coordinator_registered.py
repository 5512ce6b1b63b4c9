"""The coordinator keeps a model up to date from a registered table as from its own tables:
new keys in the user's table trigger the real retrain of exactly their ``seq`` window, and a
consumed row that changes stops it."""

from __future__ import annotations

import functools
import shutil
import time
from pathlib import Path

import pytest
import torch
from sqlalchemy import Engine, text

from inhouse import services
from inhouse.config import CoordinatorSettings, Settings, load_settings
from inhouse.coordinator.control import start
from inhouse.coordinator.retrain import run_retrain
from inhouse.coordinator.service import Coordinator
from inhouse.data import read_rows
from inhouse.data.external import register_table
from tests.coordinator_setup import make_champion

MODEL = "digits"
COLUMNS = [f"f{i}" for i in range(64)]


@pytest.fixture(scope="module")
def base_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("base-home")
    make_champion(load_settings(home=str(home)))
    return home


@pytest.fixture()
def settings(base_home: Path, tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    shutil.copytree(base_home, home)
    return load_settings(home=str(home))


def _insert(engine: Engine, keys: range, x: torch.Tensor, y: torch.Tensor) -> None:
    """The user's own system appends rows to its own table (plain SQL)."""
    names = ", ".join(COLUMNS)
    marks = ", ".join(f":{c}" for c in COLUMNS)
    rows = [
        {"k": k, "y": int(label), **dict(zip(COLUMNS, map(float, features), strict=True))}
        for k, features, label in zip(keys, x.tolist(), y.tolist(), strict=True)
    ]
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO readings (k, y, {names}) VALUES (:k, :y, {marks})"), rows)


def test_the_coordinator_retrains_on_a_registered_table_and_stops_on_a_change(
    settings: Settings,
) -> None:
    engine = services.engine(settings)
    digits = read_rows(engine, "digits")  # the user's table holds the same 1797 rows, keys 1..
    with engine.begin() as conn:
        cols = ", ".join(f"{c} DOUBLE PRECISION" for c in COLUMNS)
        conn.execute(text(f"CREATE TABLE readings (k BIGINT PRIMARY KEY, y INTEGER, {cols})"))
    _insert(engine, range(1, 1798), digits.x, digits.y)
    register_table(engine, name="readings_ds", table="readings", key="k", label="y")
    cs = CoordinatorSettings(
        model=MODEL, dataset="readings_ds", min_rows=100, epochs=3, canary_share=0.0
    )
    start(services.registry(settings), cs)  # the champion consumed seq 1..1797
    coordinator = Coordinator(
        engine=engine,
        registry=services.registry(settings),
        settings=cs,
        retrain=functools.partial(run_retrain, settings),
        clock=time.time,
    )
    assert coordinator.step().action == "wait"
    noisy = digits.x[:200] + 0.3 * torch.randn(200, 64, generator=torch.Generator().manual_seed(1))
    _insert(engine, range(5000, 5200), noisy, digits.y[:200])
    report = coordinator.step()
    assert report.measured is not None, report.reason
    state = coordinator.store.load(MODEL)
    assert state.watermark == 1997 and state.job is None
    assert report.measured.extra["window"] == [1797, 1997]
    assert 120 < report.measured.extra["new_train_rows"] < 200  # the key-held-out rows not

    with engine.begin() as conn:  # the contract broken: a consumed row changes in place
        conn.execute(text("UPDATE readings SET f3 = f3 + 1 WHERE k = 5010"))
    _insert(engine, range(6000, 6150), noisy[:150], digits.y[:150])
    stopped = coordinator.step()
    assert stopped.action == "stopped"
    assert "'readings_ds' changed in consumed rows seq 1..1997:" in stopped.reason
    assert coordinator.store.load(MODEL).status == "stopped"
