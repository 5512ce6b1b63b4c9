"""Text serving over real HTTP through the one front door (``inhouse.serve.app:build_app``):
v2 BYTES and v1, the int8 champion, batching, token attributions from the explainer sidecar, tenant
variants multiplexed in one deployment, and a tabular model answering beside it."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import httpx
import pytest
import torch

from inhouse import services
from inhouse.compress import compress
from inhouse.config import CompressionSettings, ServeArgs, Settings, TextTrainOptions
from inhouse.data.text_import import TextRows
from inhouse.kinds import build_model, register_module
from inhouse.kinds.text.epochs import evaluate_texts, train_epoch
from inhouse.kinds.text.versions import import_model_dir, load_text, register_adapter
from inhouse.models import MLPSpec
from inhouse.models.lora import lora_config, prepare_incremental
from inhouse.models.text import classifier_from
from inhouse.serve.app import build_app
from tests.hf_tiny import CLASSES, make_rows, make_tiny_bert

pytestmark = pytest.mark.integration
MODEL, TENANT, TABULAR = "intents-http", "intents-tenant-b", "tabular-beside-text"


def _rows(n: int, seed: int) -> TextRows:
    pairs = make_rows(n, seed=seed)
    return TextRows([t for t, _ in pairs], [CLASSES.index(c) for _, c in pairs], list(range(n)))


def _fit(
    model: torch.nn.Module,
    tokenizer: object,
    options: TextTrainOptions,
    rows: TextRows | None = None,
) -> float:
    """Train in-process; returns the accuracy on the test rows' true intents."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=options.learning_rate())
    for epoch in range(options.epochs):
        data = rows if rows is not None else _rows(300, 0)
        train_epoch(model, tokenizer, data, optimizer, options=options, epoch=epoch)
    return evaluate_texts(model, tokenizer, _rows(60, 9), options)


@pytest.fixture(scope="module")
def registered(ray_cluster: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A tiny BERT trained in-process: float v1, int8 v2 (champion), and a LoRA tenant variant."""
    torch.manual_seed(0)
    registry = services.registry(ray_cluster)
    tiny = make_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")
    base = import_model_dir(registry, tiny, name="tiny-bert-http", max_length=16)
    encoder, tokenizer, base_spec = load_text(registry, base)
    model, spec = classifier_from(encoder, base_spec, class_names=CLASSES, max_length=16)
    options = TextTrainOptions(
        dataset="x", model=MODEL, base="b", epochs=5, lr=2e-3, batch_size=8, max_length=16
    )
    assert _fit(model, tokenizer, options) >= 0.9
    fp32 = register_module(registry, MODEL, module=model, spec=spec, metrics={}, lineage={})
    int8 = compress(model, CompressionSettings(prune_amount=0.0, quantize_embeddings=True))
    small = register_module(
        registry,
        MODEL,
        module=int8,
        spec=spec,
        metrics={},
        fmt="compressed",
        lineage={"parent": {"model": MODEL, "version": fp32.version}},
    )
    registry.set_alias(MODEL, "champion", small.version)
    # The tenant's variant: the same classes, but it calls every text a refund.
    variant, _, _ = load_text(registry, fp32)
    prepare_incremental(variant, "lora", lora=lora_config(r=4))
    refund = TextRows(_rows(120, 3).texts, [CLASSES.index("refund")] * 120, list(range(120)))
    tenant_options = options.model_copy(update={"epochs": 4, "lr": 1e-2})
    assert _fit(variant, tokenizer, tenant_options, refund) <= 0.5  # it learned "refund"
    adapter = register_adapter(
        registry,
        TENANT,
        model=variant,
        method="lora",
        base=fp32,
        class_names=CLASSES,
        max_length=16,
        lora=lora_config(r=4),
        metrics={},
        lineage={},
    )
    registry.set_alias(TENANT, "champion", adapter.version)
    # A tabular model (untrained: only its answering matters) served by the same app.
    mlp_spec = MLPSpec(input_dim=4, num_classes=3).model_dump()
    mlp = register_module(
        registry, TABULAR, module=build_model(mlp_spec), spec=mlp_spec, metrics={}, lineage={}
    )
    registry.set_alias(TABULAR, "champion", mlp.version)
    return ray_cluster


@pytest.fixture(scope="module")
def client(registered: Settings) -> Iterator[httpx.Client]:
    from ray import serve

    serve.run(
        build_app(ServeArgs(models=[MODEL, TABULAR], home=str(registered.home))),
        name="inhouse-text",
        route_prefix="/",
    )
    token = services.ensure_client_token(registered).read_text().strip()
    with httpx.Client(
        base_url=registered.serve_url, timeout=60, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        yield http
    serve.delete("inhouse-text")


def _v2(texts: list[str]) -> dict[str, object]:
    return {
        "id": "r1",
        "inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}],
    }


def test_v2_bytes_and_v1_answer_from_the_int8_champion(client: httpx.Client) -> None:
    test = _rows(60, 9)
    meta = client.get(f"/v2/models/{MODEL}").json()
    assert "inputs" in meta, meta
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    v2 = client.post(f"/v2/models/{MODEL}/infer", json=_v2(test.texts))
    assert v2.status_code == 200, v2.text
    body = v2.json()
    assert body["id"] == "r1" and body["model_version"] == "2"  # the int8 version
    labels = next(o for o in body["outputs"] if o["name"] == "label")["data"]
    names = next(o for o in body["outputs"] if o["name"] == "class_name")["data"]
    accuracy = sum(int(p == t) for p, t in zip(labels, test.labels, strict=True)) / len(labels)
    assert accuracy >= 0.85 and names[0] == CLASSES[labels[0]]
    v1 = client.post(
        f"/v1/models/{MODEL}:predict", json={"instances": [test.texts[0], {"text": test.texts[1]}]}
    )
    assert v1.status_code == 200 and v1.json()["predictions"] == labels[:2]


def test_concurrent_requests_are_batched_and_bad_ones_refused(client: httpx.Client) -> None:
    texts = _rows(32, 4).texts
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda t: client.post(f"/v1/models/{MODEL}:predict", json={"instances": [t]}), texts
            )
        )
    assert all(a.status_code == 200 for a in answers)
    numeric = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
    assert client.post(f"/v2/models/{MODEL}/infer", json=numeric).status_code == 422
    assert client.post(f"/v1/models/{MODEL}:predict", json={"instances": [3]}).status_code == 422
    assert client.post(f"/v1/models/{MODEL}:predict", content=b"{").status_code == 400
    assert client.post("/v1/models/nope:predict", json={"instances": ["a"]}).status_code == 404
    url = str(client.base_url).rstrip("/") + f"/v1/models/{MODEL}:predict"
    anonymous = httpx.post(url, json={"instances": ["a"]})
    assert anonymous.status_code == 401


def test_explainer_sidecar_attributes_the_intent_words(client: httpx.Client) -> None:
    text = "please my refund money is not back"
    response = client.post(f"/v1/models/{MODEL}:explain", json={"instances": [text], "n_steps": 32})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["explained_version"] == 1 and body["version"] == 2  # float parent of the int8
    first = body["explanations"][0]
    assert first["tokens"][0] == "[CLS]" and len(first["tokens"]) == len(first["attributions"])
    assert first["prediction"] == "refund" and abs(first["delta"]) < 0.1
    ranked = sorted(zip(first["attributions"], first["tokens"], strict=True), reverse=True)
    assert {token for _, token in ranked[:3]} & {"refund", "money", "back"}


def test_variants_are_multiplexed_in_the_same_deployment(client: httpx.Client) -> None:
    text = "my card has not arrived in the post yet"
    base = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [text]}).json()
    headers = {"serve_multiplexed_model_id": TENANT}
    tenant = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [text]}, headers=headers)
    assert tenant.status_code == 200, tenant.text
    assert base["classes"] == ["card_arrival"] and tenant.json()["classes"] == ["refund"]
    assert tenant.json()["model"] == TENANT and base["model"] == MODEL
    v2 = client.post(f"/v2/models/{MODEL}/infer", json=_v2([text]), headers=headers).json()
    assert v2["model_name"] == TENANT
    unknown = {"serve_multiplexed_model_id": "no-such-variant"}
    missing = client.post(
        f"/v1/models/{MODEL}:predict", json={"instances": [text]}, headers=unknown
    )
    assert missing.status_code == 404
    not_a_variant = {"serve_multiplexed_model_id": MODEL}
    refused = client.post(
        f"/v1/models/{MODEL}:predict", json={"instances": [text]}, headers=not_a_variant
    )
    assert refused.status_code == 422


def test_a_tabular_model_answers_from_the_same_app(client: httpx.Client) -> None:
    rows = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [0.0] * 8}]}
    v2 = client.post(f"/v2/models/{TABULAR}/infer", json=rows)
    assert v2.status_code == 200, v2.text
    assert v2.json()["model_name"] == TABULAR
    meta = client.get(f"/v2/models/{TABULAR}").json()
    assert meta["inputs"][0]["datatype"] == "FP32"
    v1 = client.post(f"/v1/models/{TABULAR}:predict", json={"instances": [[1, 2, 3, 4]]})
    assert v1.status_code == 200 and len(v1.json()["predictions"]) == 1
    # Each kind refuses the other's bodies; a text explanation has no picture.
    texts = client.post(f"/v1/models/{TABULAR}:predict", json={"instances": ["hello"]})
    assert texts.status_code in (400, 422)
    png = client.post(f"/v1/models/{MODEL}:explain?format=png", json={"instances": ["refund"]})
    assert png.status_code == 422
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_text_replicas_follow_a_promotion_and_a_rollback(
    registered: Settings, client: httpx.Client
) -> None:
    from tests.polling import wait_for

    registry = services.registry(registered)
    body = _v2(["refund please"])

    def answered_by() -> str:
        return str(client.post(f"/v2/models/{MODEL}/infer", json=body).json()["model_version"])

    registry.set_alias(MODEL, "champion", 1)  # the float version, as a promotion would
    try:
        wait_for(lambda: answered_by() == "1", timeout_s=30, what="the float v1 answering")
    finally:
        registry.set_alias(MODEL, "champion", 2)  # back to int8, as a rollback would
    wait_for(lambda: answered_by() == "2", timeout_s=30, what="the int8 v2 answering again")


def test_a_text_canary_answers_its_share_and_its_traffic_is_counted(
    registered: Settings, client: httpx.Client
) -> None:
    """While a canary of the text model runs, the ingress sends it its share (the replica holds
    it beside the champion) and records both versions' requests for the coordinator."""
    import time

    from inhouse.canary import Canary, read_traffic, save_canary
    from inhouse.db import session_scope
    from inhouse.registry import move_alias
    from tests.polling import wait_for

    registry, engine = services.registry(registered), services.engine(registered)
    champion, candidate = registry.resolve(MODEL, "champion"), 1  # int8 v2, float v1
    started = time.time()
    registry.set_alias(MODEL, "candidate", candidate)
    with session_scope(engine) as session:
        save_canary(session, MODEL, Canary(candidate, champion, 0.5, started, started + 600))
    answered: list[str] = []

    def both_answer() -> bool:
        reply = client.post(f"/v2/models/{MODEL}/infer", json=_v2(["refund please"]))
        assert reply.status_code == 200, reply.text
        answered.append(str(reply.json()["model_version"]))
        return {str(candidate), str(champion)} <= set(answered[-30:])

    try:
        wait_for(both_answer, timeout_s=60, what="the champion and the canary both answering")
        wait_for(
            lambda: read_traffic(engine, MODEL, candidate, since=started).requests > 0
            and read_traffic(engine, MODEL, champion, since=started).requests > 0,
            timeout_s=15,
            what="both versions' traffic flushed by the ingress",
        )
        assert read_traffic(engine, MODEL, candidate, since=started).errors == 0
    finally:
        with session_scope(engine) as session:
            save_canary(session, MODEL, None)
            move_alias(session, MODEL, "candidate", None)
