"""``inhouse models register --builder``: the user's module and weights become a tabular version
that loads, compresses and retrains like the MLP; refusals come before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from inhouse import services
from inhouse.cli import main
from inhouse.config import CompressionSettings, GateSettings, Settings, load_settings
from inhouse.data import describe, read_rows, seed
from inhouse.kinds import kind_for_spec, load_module
from inhouse.kinds.tabular.compression import compress_version
from inhouse.kinds.updating import RetrainJob, RetrainRun
from tests.user_models.nets import residual, write_trained_weights

TARGET = "tests.user_models.nets:residual"
KWARGS = '{"inputs": 64, "width": 16, "classes": 10}'


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("INHOUSE_MODELS__ALLOWED_BUILDER_PREFIXES", '["tests.user_models"]')
    (tmp_path / "home").mkdir()
    settings = load_settings(home=str(tmp_path / "home"))
    seed(services.engine(settings), "digits")
    return settings


@pytest.fixture
def weights(home: Settings, tmp_path: Path) -> Path:
    return write_trained_weights(services.engine(home), "digits", tmp_path / "model.safetensors")


def _register(home: Settings, *argv: str) -> int:
    return main(["--home", str(home.home), "models", "register", "--name", "user-digits", *argv])


def _builder_args(weights: Path, **changes: str) -> list[str]:
    flags = {"--builder": TARGET, "--kwargs": KWARGS, "--weights": str(weights)} | changes
    return [part for flag, value in flags.items() for part in (flag, value)] + [
        "--dataset",
        "digits",
    ]


def test_a_builder_model_is_registered_with_its_builder_and_loads_as_trained(
    home: Settings, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _register(home, *_builder_args(weights)) == 0
    out = capsys.readouterr().out
    assert "user-digits v1: torch_module (tests.user_models.nets:residual)" in out
    assert "champion" in out and "encrypted" in out
    registry = services.registry(home)
    info = registry.get("user-digits", "champion")
    assert info.spec["builder"] == TARGET and info.spec["kwargs"]["width"] == 16
    assert (info.spec["input_dim"], info.spec["num_classes"]) == (64, 10)
    builder = info.lineage["builder"]
    assert builder["target"] == TARGET and len(builder["module_sha256"]) == 64
    assert info.lineage["source"]["kind"] == "safetensors" and info.lineage["dataset"] == "digits"
    assert info.metrics["test_accuracy"] > 0.8
    user = residual(64, 16, 10)
    user.load_state_dict(load_file(str(weights)))
    x = read_rows(services.engine(home), "digits", split="test").x[:8]
    with torch.inference_mode():
        assert torch.allclose(load_module(registry, info)(x), user.eval()(x), atol=1e-5)
    assert "global_importance" in registry.full_lineage(info)


def test_refusals_name_the_fault_and_write_nothing(
    home: Settings, weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pickled, three = tmp_path / "model.pt", tmp_path / "three.safetensors"
    torch.save(residual(64).state_dict(), pickled)
    save_file(residual(64, 16, 3).state_dict(), str(three))
    cases = {
        "not under an allowed module prefix": _builder_args(weights, **{"--builder": "os:getcwd"}),
        "must be .safetensors": _builder_args(pickled),
        "do not fit the builder's module": _builder_args(
            weights, **{"--kwargs": '{"inputs": 64, "width": 8, "classes": 10}'}
        ),
        "forward must return logits [n, 10]": _builder_args(
            three, **{"--kwargs": '{"inputs": 64, "width": 16, "classes": 3}'}
        ),
        "cannot be imported on this node": _builder_args(
            weights, **{"--builder": "tests.user_models.gone:residual"}
        ),
        "needs --weights": ["--builder", TARGET, "--dataset", "digits"],
        "exactly one of --builder": ["--hf", str(tmp_path)],
    }
    for reason, argv in cases.items():
        if reason == "exactly one of --builder":
            argv = [*argv, *_builder_args(weights)]
        assert _register(home, *argv) == 2, reason
        err = capsys.readouterr().err
        assert reason in err and err.count("\n") == 1, err
    assert services.registry(home).models() == []


def test_a_token_without_code_admin_cannot_register_a_builder(
    home: Settings,
    weights: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from datetime import timedelta

    access = services.access(home)
    for name, role in (("eng", "ml-engineer"), ("root", "admin")):
        access.create_principal(name=name, roles=[role])
    tokens = {
        name: access.issue_token(principal=name, expires_in=timedelta(hours=1)).token
        for name in ("eng", "root")
    }
    monkeypatch.setenv("INHOUSE_TOKEN", tokens["eng"])
    assert _register(home, *_builder_args(weights)) != 0
    assert "lacks 'code:admin'" in capsys.readouterr().err
    assert services.registry(home).models() == []
    train = ["--home", str(home.home), "train", "--dataset", "digits", "--builder", TARGET]
    assert main(train) != 0  # refused before a job is submitted
    assert "lacks 'code:admin'" in capsys.readouterr().err
    monkeypatch.setenv("INHOUSE_TOKEN", tokens["root"])
    assert _register(home, *_builder_args(weights)) == 0


def test_a_builder_version_compresses_and_retrains_through_the_tabular_kind(
    home: Settings, weights: Path
) -> None:
    from inhouse.config import CoordinatorSettings

    assert _register(home, *_builder_args(weights)) == 0
    registry, engine = services.registry(home), services.engine(home)
    summary = compress_version(
        registry=registry,
        engine=engine,
        model="user-digits",
        ref="1",
        settings=CompressionSettings(prune_amount=0.0, finetune_epochs=0),  # int8 alone
        gate=GateSettings(),
        promote=False,
    )
    compressed = registry.get("user-digits", str(summary["version"]))
    assert compressed.format == "compressed" and compressed.spec["builder"] == TARGET
    test = read_rows(engine, "digits", split="test")
    module = load_module(registry, compressed)
    with torch.inference_mode():
        accuracy = float((module(test.x).argmax(dim=1) == test.y).float().mean())
    assert accuracy > 0.9 and summary["fidelity"] > 0.9
    settings = CoordinatorSettings(model="user-digits", dataset="digits", epochs=1)
    last = int(describe(engine, "digits").last_id or 0)
    job = RetrainJob(run_id="retrain-user-digits-0", after_id=0, up_to_id=last, reasons=["manual"])
    updating = kind_for_spec(compressed.spec).updating
    candidate = updating.train_candidate(RetrainRun(registry, engine, settings, job))
    assert candidate.spec == registry.get("user-digits", "1").spec
    assert candidate.lineage["parent"] == {"model": "user-digits", "version": 1}
    assert candidate.lineage["builder"]["target"] == TARGET
    assert candidate.metrics["test_accuracy"] > 0.8
