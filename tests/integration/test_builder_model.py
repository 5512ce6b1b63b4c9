"""The user's own PyTorch module on the cluster: registered from a builder + safetensors weights,
served and explained by the tabular kind's replica and sidecar, trained by Ray Train workers
that import the builder, and a builder a replica cannot import is a clear deploy error."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import load_file, save_file

from inhouse import services
from inhouse.cli.ray_ops import run_app
from inhouse.config import ServeArgs, Settings, load_settings
from inhouse.data import describe, read_rows, seed
from inhouse.errors import UnavailableError
from inhouse.kinds.tabular.user_model import register_user_model
from inhouse.schema import get_engine
from inhouse.serve.app import build_app
from tests.user_models.nets import residual, write_trained_weights

pytestmark = pytest.mark.integration
MODEL = "user_digits"
TARGET = "tests.user_models.nets:residual"
KWARGS = {"inputs": 64, "width": 16, "classes": 10}


def _allowing(base: Settings, *prefixes: str) -> Settings:
    return load_settings(
        home=str(base.home), models={"allowed_builder_prefixes": ["tests.user_models", *prefixes]}
    )


@pytest.fixture(scope="module")
def registered(
    ray_cluster: Settings, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, torch.nn.Module]:
    """The user's residual net, trained outside inhouse, registered as ``MODEL``'s champion."""
    settings = _allowing(ray_cluster)
    engine = get_engine(settings.db_url)
    seed(engine, "digits")
    weights = write_trained_weights(
        engine, "digits", tmp_path_factory.mktemp("user") / "model.safetensors"
    )
    register_user_model(
        settings,
        services.registry(settings),
        name=MODEL,
        builder=TARGET,
        kwargs=KWARGS,
        weights=weights,
        dataset="digits",
        promote=True,
    )
    user = residual(**KWARGS)
    user.load_state_dict(load_file(str(weights)))
    return settings, user.eval()


@pytest.fixture(scope="module")
def client(registered: tuple[Settings, torch.nn.Module]) -> Iterator[httpx.Client]:
    from ray import serve

    settings = registered[0]
    serve.run(
        build_app(ServeArgs(models=[MODEL], home=str(settings.home))),
        name="inhouse-builder",
        route_prefix="/",
    )
    token = services.ensure_client_token(settings).read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=settings.serve_url, timeout=60, headers=headers) as http:
        yield http
    serve.delete("inhouse-builder")


def test_a_builder_model_answers_and_explains_over_http(
    client: httpx.Client, registered: tuple[Settings, torch.nn.Module]
) -> None:
    settings, user = registered
    x = read_rows(get_engine(settings.db_url), "digits", split="test").x[:6]
    with torch.inference_mode():
        expected = user(x).argmax(dim=1).tolist()
    body = {
        "inputs": [
            {"name": "x", "shape": [6, 64], "datatype": "FP32", "data": x.flatten().tolist()}
        ]
    }
    v2 = client.post(f"/v2/models/{MODEL}/infer", json=body)
    assert v2.status_code == 200, v2.text
    label = next(o for o in v2.json()["outputs"] if o["name"] == "label")
    assert label["data"] == expected
    v1 = client.post(f"/v1/models/{MODEL}:predict", json={"instances": x[:2].tolist()})
    assert v1.status_code == 200 and len(v1.json()["predictions"]) == 2
    explained = client.post(
        f"/v1/models/{MODEL}:explain", json={"instances": x[:2].tolist(), "method": "ig"}
    )
    assert explained.status_code == 200, explained.text
    first = explained.json()["explanations"][0]
    assert len(first["attributions"]) == 64 and first["prediction"]["index"] == expected[0]
    shap = client.post(
        f"/v1/models/{MODEL}:explain", json={"instances": x[:1].tolist(), "method": "shap"}
    )
    assert shap.status_code == 200 and shap.json()["method"] == "shap"


def test_ray_train_workers_train_the_builders_module(registered: tuple[Settings, object]) -> None:
    from inhouse.jobs import train

    settings = load_settings(
        home=str(registered[0].home),
        models={"allowed_builder_prefixes": ["tests.user_models"]},
        train={
            "model": "user_digits_trained",
            "dataset": "digits",
            "builder": TARGET,
            "builder_kwargs": '{"inputs": 64, "width": 32, "classes": 10}',
            "epochs": 4,
            "num_workers": 2,
            "compress": False,
        },
    )
    rows = describe(services.engine(settings), "digits")  # other tests may have appended rows
    summary = train.run(settings, settings.train)
    assert summary["test_accuracy"] >= 0.9
    info = services.registry(settings).get("user_digits_trained", str(summary["version"]))
    assert info.spec["builder"] == TARGET and info.spec["kwargs"]["width"] == 32
    assert info.lineage["builder"]["target"] == TARGET
    assert info.lineage["rows"]["train_rows"] == rows.train_rows >= 1437


def test_a_builder_no_replica_can_import_fails_the_deploy_with_its_name(
    registered: tuple[Settings, object], tmp_path: Path
) -> None:
    from ray import serve

    # A package only this process can import (its directory is on this sys.path alone).
    (tmp_path / "laptop_only_nets.py").write_text(
        "from tests.user_models.nets import residual\n", encoding="utf-8"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        settings = _allowing(registered[0], "laptop_only_nets")
        weights = tmp_path / "w.safetensors"
        save_file(residual(**KWARGS).state_dict(), str(weights))
        register_user_model(
            settings,
            services.registry(settings),
            name="laptop_only",
            builder="laptop_only_nets:residual",
            kwargs=KWARGS,
            weights=weights,
            dataset="digits",
            promote=True,
        )
    finally:
        sys.path.remove(str(tmp_path))
    app = build_app(ServeArgs(models=["laptop_only"], home=str(settings.home), explainers=False))
    try:
        with pytest.raises(UnavailableError) as failed:
            run_app(app, name="inhouse-laptop-only", route_prefix="/laptop")
        message = failed.value.message
        assert message.startswith("deploying inhouse-laptop-only failed: model-laptop_only: ")
        assert "builder 'laptop_only_nets:residual' cannot be imported on this node" in message
        assert "install its package on every node" in message and "\n" not in message
    finally:
        serve.delete("inhouse-laptop-only")
