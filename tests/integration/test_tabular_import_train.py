"""A data set imported from the user's own Parquet file trains through Ray Train DDP: two
workers, each on its shard, from PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inhouse.config import Settings, load_settings
from inhouse.data.tabular_import import TabularOptions, import_tabular
from inhouse.jobs import train
from inhouse.schema import get_engine

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_an_imported_parquet_file_trains_with_sharded_workers(
    ray_cluster: Settings, pg_url: str, tmp_path: Path
) -> None:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    columns = {
        str(n).replace(" ", "_"): bunch.data[:, i] for i, n in enumerate(bunch.feature_names)
    }
    columns["size"] = ["big" if r > 15 else "small" for r in bunch.data[:, 0]]
    columns["diagnosis"] = [str(bunch.target_names[t]) for t in bunch.target]
    path = tmp_path / "cancer.parquet"
    pq.write_table(pa.table(columns), path)
    done = import_tabular(
        get_engine(pg_url), name="cancer", uri=str(path), options=TabularOptions(label="diagnosis")
    )
    assert len(done.feature_names) == 32 and done.class_names == ["benign", "malignant"]
    settings = load_settings(
        home=str(ray_cluster.home),
        database_url=pg_url,
        train={"dataset": "cancer", "model": "cancer", "epochs": 10, "num_workers": 2},
    )
    summary = train.run(settings, settings.train)
    assert summary["test_accuracy"] >= 0.9
