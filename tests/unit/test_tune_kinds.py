"""``inhouse tune`` searches through the data set's kind (``kind.tuning``): the MLP's search space
is the tabular kind's, and a text data set is refused before any trial starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from inhouse.config import TuneSettings, load_settings
from inhouse.data.text_import import import_text_csv
from inhouse.errors import InvalidInputError
from inhouse.kinds import kinds_with
from inhouse.services import engine
from tests.hf_tiny import make_rows, write_csv


def test_only_the_tabular_kind_has_a_search_space() -> None:
    assert kinds_with("tuning") == ["tabular"]


def test_tuning_a_text_data_set_is_refused_by_its_kind(tmp_path: Path) -> None:
    from inhouse.jobs import tune

    settings = load_settings(home=str(tmp_path), train={"dataset": "intents", "model": "m"})
    csv = write_csv(tmp_path / "t.csv", make_rows(12))
    import_text_csv(engine(settings), name="intents", csv_path=csv, label_column="category")
    with pytest.raises(InvalidInputError) as refused:
        tune.run(settings, TuneSettings(num_trials=1, max_epochs=1, grace_period=1))
    assert refused.value.message == (
        "models of kind 'text' cannot be tuned here; kinds that can: tabular"
    )
    assert not list((settings.runs_dir).glob("tune-*"))  # nothing started
