"""The updating halves of the registered kinds: found through the registry, refusing what they
cannot honour, and the retrain job as a typed model (what the coordinator's state records)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inhouse.config import CoordinatorSettings
from inhouse.errors import InvalidInputError
from inhouse.kinds import kind_for_spec, kind_named
from inhouse.kinds.updating import RetrainJob


def test_each_architecture_finds_its_kinds_updating_half() -> None:
    assert kind_for_spec({"kind": "mlp"}).updating is kind_named("tabular").updating
    assert kind_for_spec({"kind": "hf_text"}).updating is kind_named("text").updating


def test_only_the_text_kind_refuses_the_drift_trigger() -> None:
    drifting = CoordinatorSettings(model="m", drift_threshold=0.2)
    kind_named("tabular").updating.check_settings(drifting)
    with pytest.raises(InvalidInputError, match="drift-threshold"):
        kind_named("text").updating.check_settings(drifting)
    kind_named("text").updating.check_settings(CoordinatorSettings(model="m"))


def test_a_retrain_job_round_trips_through_the_state_json() -> None:
    job = RetrainJob(run_id="retrain-m-10-20", after_id=10, up_to_id=20, reasons=["min_rows"])
    assert RetrainJob.model_validate(job.model_dump(mode="json")) == job
    with pytest.raises(ValidationError):
        RetrainJob.model_validate({"run_id": "r", "after_id": "ten", "up_to_id": 20})
