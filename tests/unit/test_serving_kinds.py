"""The serving half of each kind, without Ray: what the replica, explainer and ingress call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inhouse.errors import InvalidInputError
from inhouse.kinds import build_model, kind_for_spec, kind_named, register_module
from inhouse.models import MLPSpec
from inhouse.registry import Registry
from inhouse.schema import get_engine

SPEC = {
    **MLPSpec(input_dim=4, hidden=[8], num_classes=3).model_dump(),
    "class_names": ["a", "b", "c"],
}


@pytest.fixture()
def registry(sqlite_url: str, tmp_path: Path) -> Registry:
    registry = Registry(engine=get_engine(sqlite_url), root=tmp_path / "reg")
    torch.manual_seed(0)
    register_module(registry, "rows", module=build_model(SPEC), spec=SPEC, metrics={}, lineage={})
    return registry


def test_a_version_is_served_by_the_kind_of_its_spec() -> None:
    assert kind_for_spec(SPEC).name == "tabular"
    assert kind_for_spec({"kind": "hf_text"}).name == "text"
    with pytest.raises(InvalidInputError, match="no registered model kind"):
        kind_for_spec({"kind": "nope"})
    text = kind_named("text").serving
    assert text.refusal({"kind": "hf_text", "role": "encoder"}) is not None
    assert text.refusal({"kind": "hf_text", "role": "classifier"}) is None
    assert kind_named("tabular").serving.refusal(SPEC) is None


def test_tabular_requests_batch_and_answer_per_request(registry: Registry) -> None:
    serving = kind_named("tabular").serving
    loaded = serving.load(registry, registry.get("rows", "1"))
    info = serving.describe(loaded)
    assert (loaded.model, loaded.version) == ("rows", 1)
    assert (info["n_features"], info["n_classes"]) == (4, 3)
    body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [0.5] * 8}]}
    x, request_id = serving.parse_v2(body, info, max_instances=8)
    one = serving.parse_v1({"instances": [[1.0, 2.0, 3.0, 4.0]]}, info, max_instances=8)
    answers = serving.predict(loaded, [serving.prepare(loaded, x), serving.prepare(loaded, one)])
    assert [a["probabilities"].shape for a in answers] == [(2, 3), (1, 3)]
    alone = serving.predict(loaded, [one])[0]["probabilities"]
    assert np.allclose(answers[1]["probabilities"], alone, atol=1e-6)
    result = {**answers[1], "model": "rows", "version": 1}
    assert serving.v1_response(result)["classes"][0] in {"a", "b", "c"}
    v2 = serving.v2_response(model="rows", request_id=request_id, result=result)
    assert v2["model_version"] == "1"
    with pytest.raises(InvalidInputError, match=r"expected shape \[n, 4\]"):
        serving.prepare(loaded, np.zeros((1, 5), dtype=np.float32))


def test_tabular_explanations_come_from_the_kind(registry: Registry) -> None:
    serving = kind_named("tabular").serving
    loaded = serving.load_explained(registry, registry.get("rows", "1"))
    info = serving.describe(loaded)
    body = {"instances": [[1.0, 2.0, 3.0, 4.0]], "method": "ig", "options": {"n_steps": 8}}
    call = serving.parse_explain(body, info, max_instances=8, fmt="json")
    answer = serving.explain(loaded, call, max_instances=8)
    assert answer["model_name"] == "rows" and len(answer["explanations"]) == 1
    png = serving.explain_png(loaded, call, max_instances=8)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_text_requests_parse_and_refuse_pictures() -> None:
    serving = kind_named("text").serving
    info = {"version": 2, "n_classes": 3}
    assert serving.parse_v1({"instances": ["a", {"text": "b"}]}, info, max_instances=4) == [
        "a",
        "b",
    ]
    body = {"instances": ["refund please"], "n_steps": 8}
    call = serving.parse_explain(body, info, max_instances=4, fmt="json")
    assert (call.texts, call.n_steps) == (["refund please"], 8)
    with pytest.raises(InvalidInputError, match="JSON only"):
        serving.parse_explain(body, info, max_instances=4, fmt="png")
    meta = serving.model_metadata(model="m", info=info)
    assert meta["inputs"][0]["datatype"] == "BYTES" and meta["versions"] == ["2"]
