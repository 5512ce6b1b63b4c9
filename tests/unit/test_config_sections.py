"""The settings sections of inhouse.config: one DP section, one error path, a typed payload."""

from __future__ import annotations

import argparse
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest

from inhouse.config import (
    CompressionSettings,
    CoordinatorSettings,
    DPSettings,
    SettingsPayload,
    TextTrainOptions,
    TrainSettings,
    load_settings,
    settings_payload,
)
from inhouse.errors import ConfigError, InvalidInputError
from inhouse.flags import add_section_flags
from inhouse.protocol import parse_v2


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in [k for k in os.environ if k.startswith("INHOUSE_")]:
        monkeypatch.delenv(key)


@pytest.mark.parametrize("model", [TrainSettings, TextTrainOptions, CoordinatorSettings])
def test_every_dp_capable_section_shares_the_dp_fields(model: type[DPSettings]) -> None:
    assert issubclass(model, DPSettings)
    for name, field in DPSettings.model_fields.items():
        assert model.model_fields[name].description == field.description
        assert model.model_fields[name].default == field.default


def test_dp_fields_keep_their_flat_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHOUSE_TRAIN__NOISE_MULTIPLIER", "1.5")
    monkeypatch.setenv("INHOUSE_TRAIN__ACCOUNTANT", "rdp")
    train = load_settings().train
    assert (train.noise_multiplier, train.accountant) == (1.5, "rdp")


def test_dp_fields_pass_on_to_the_run_a_coordinator_starts() -> None:
    cs = CoordinatorSettings.parse({"model": "m", "dp": True, "target_epsilon": 2.0})
    train = TrainSettings(**cs.dp_fields())
    assert (train.dp, train.target_epsilon, train.target_delta) == (True, 2.0, 1e-5)


def test_own_flags_come_before_the_shared_dp_flags() -> None:
    parser = argparse.ArgumentParser()
    add_section_flags(parser, TextTrainOptions)
    dests = [action.dest for action in parser._actions if action.dest != "help"]
    assert dests[:2] == ["dataset", "model"]
    assert dests[-len(DPSettings.model_fields) :] == list(DPSettings.model_fields)


@pytest.mark.parametrize(
    ("parse", "message"),
    [
        (
            lambda: load_settings(train={"epochs": 0}),
            "invalid settings: train.epochs: Input should be greater than or equal to 1 "
            "(set it with --epochs or INHOUSE_TRAIN__EPOCHS)",
        ),
        (
            lambda: load_settings(bogus=1),
            "invalid settings: bogus: Extra inputs are not permitted (set it with INHOUSE_BOGUS)",
        ),
        (
            lambda: CoordinatorSettings.parse({"model": "m", "epochs": 0}),
            "coordinator.epochs: Input should be greater than or equal to 1 (got 0; set --epochs)",
        ),
        (
            lambda: CompressionSettings.parse({"prune_amount": 1.5}),
            "CompressionSettings.prune_amount: Input should be less than or equal to 0.99 "
            "(got 1.5)",
        ),
        (
            lambda: TextTrainOptions.from_args(
                argparse.Namespace(dataset="d", model="m", model_dir=None, base=None)
            ),
            "options: Value error, give exactly one of --model-dir and --base",
        ),
    ],
)
def test_a_bad_field_is_one_config_error_naming_it(
    parse: Callable[[], object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse()
    assert str(caught.value) == message


def test_a_bad_request_body_names_the_first_field_and_counts_the_rest() -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_v2({"inputs": [{"name": "x"}]}, n_features=2, max_instances=4)
    assert not isinstance(caught.value, ConfigError)
    assert str(caught.value) == "inputs.0.shape: Field required (and 2 more)"


def test_the_payload_crosses_a_process_boundary_typed(tmp_path: Path) -> None:
    settings = load_settings(
        home=str(tmp_path),
        database_url=f"sqlite:///{tmp_path / 'x.db'}",
        serve={"port": 9123, "max_batch_size": 1},
        security={"encrypt_at_rest": False},
    )
    payload = pickle.loads(pickle.dumps(settings_payload(settings)))
    assert isinstance(payload, SettingsPayload)
    rebuilt = payload.load()
    assert rebuilt.home == settings.home and rebuilt.db_url == settings.db_url
    assert rebuilt.serve == settings.serve and rebuilt.security == settings.security
