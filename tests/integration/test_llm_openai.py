"""A tiny LLM served behind the OpenAI API, driven by the official ``openai`` client: chat,
completions, streaming, the model list, errors in OpenAI's shape (the deployment keeps
serving after each), the ``model:generate`` permission, the audit, concurrent streams and a
client that disconnects mid-stream (its engine slot frees).

One Serve app for the module: the LLM and a tabular model (for the wrong-route errors), with
their explainer sidecars (token attributions of an answer through the common explain route).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import torch

from inhouse import services
from inhouse.config import ServeArgs, Settings
from inhouse.errors import NotFoundError
from inhouse.kinds import build_model, kind_named, register_module
from inhouse.models import MLPSpec
from inhouse.serve.app import build_app
from tests.llm_fixtures import tiny_llm_dir

pytestmark = pytest.mark.integration
LLM, MLP, APP = "tiny-llm", "tiny-mlp", "inhouse-llm"
CONTEXT, MAX_TOKENS = 2048, 1500
LIMITS = {"INHOUSE_LLM__MAX_TOKENS": str(MAX_TOKENS), "INHOUSE_LLM__MAX_SEQUENCES": "4"}
HI = [{"role": "user", "content": "the cat sees the moon"}]


@pytest.fixture(scope="module")
def served(ray_cluster: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The tiny LLM (its context window widened: rotary positions need no weights) and a
    tabular model, served in one app under the session cluster's settings."""
    from ray import serve

    source = tiny_llm_dir(tmp_path_factory.mktemp("tiny-llm"))
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "max_position_embeddings": CONTEXT}))
    registry = services.registry(ray_cluster)
    importing = kind_named("llm").importing
    info = importing.import_model(
        ray_cluster, registry, Path(source), name=LLM, options=importing.options_type()
    )
    registry.set_alias(LLM, "champion", info.version)
    spec = MLPSpec(input_dim=4, hidden=[8], num_classes=2).model_dump()
    torch.manual_seed(0)
    mlp = register_module(
        registry, MLP, module=build_model(spec), spec=spec, metrics={}, lineage={}
    )
    registry.set_alias(MLP, "champion", mlp.version)
    os.environ.update(LIMITS)
    try:
        app = build_app(ServeArgs(models=[LLM, MLP], home=str(ray_cluster.home)))
    finally:
        for name in LIMITS:
            os.environ.pop(name)
    serve.run(app, name=APP, route_prefix="/")
    yield ray_cluster
    serve.delete(APP)


def _client(settings: Settings, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{settings.serve_url}/v1", api_key=token, max_retries=0)


@pytest.fixture(scope="module")
def client(served: Settings) -> openai.OpenAI:
    return _client(served, services.ensure_client_token(served).read_text().strip())


def _stats() -> dict[str, Any]:
    from ray import serve

    handle = serve.get_deployment_handle(f"model-{LLM}", app_name=APP)
    stats: dict[str, Any] = handle.generation_stats.remote().result()
    return stats


def _chat(client: openai.OpenAI, **kw: Any) -> Any:
    args: dict[str, Any] = {"model": LLM, "messages": HI, "max_tokens": 12, "temperature": 0}
    return client.chat.completions.create(**{**args, **kw})


def test_chat_and_completions(client: openai.OpenAI) -> None:
    answer = _chat(client)
    choice = answer.choices[0]
    assert answer.object == "chat.completion" and answer.model == LLM
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert answer.usage.prompt_tokens > 5 and 0 < answer.usage.completion_tokens <= 12
    assert _chat(client).choices[0].message.content == choice.message.content  # greedy
    seeded = [_chat(client, temperature=1.0, seed=3).choices[0].message.content for _ in "ab"]
    assert seeded[0] == seeded[1]
    text = client.completions.create(model=LLM, prompt="The river", max_tokens=6, temperature=0)
    assert text.object == "text_completion" and isinstance(text.choices[0].text, str)
    assert text.usage.completion_tokens <= 6 and text.usage.prompt_tokens >= 2


def test_streaming_gives_the_same_answer_in_pieces(client: openai.OpenAI) -> None:
    whole = _chat(client, max_tokens=24).choices[0].message.content
    chunks = list(_chat(client, max_tokens=24, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    finished = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finished[-1] in ("stop", "length") and set(finished[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens <= 24
    pieces = client.completions.create(model=LLM, prompt="A model", max_tokens=8, stream=True)
    assert sum(1 for p in pieces if p.choices[0].text) >= 1


def test_model_list_and_card(client: openai.OpenAI, served: Settings) -> None:
    assert [m.id for m in client.models.list()] == [LLM]  # the tabular model does not generate
    assert client.models.retrieve(LLM).id == LLM
    token = client.api_key
    status = httpx.get(
        f"{served.serve_url}/v1/models/{LLM}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert status["name"] == LLM and status["ready"] is True  # KServe v1 still answers


@pytest.mark.parametrize(
    ("kw", "error", "words"),
    [
        ({"messages": [{"role": "wizard", "content": "x"}]}, openai.BadRequestError, "wizard"),
        ({"messages": []}, openai.BadRequestError, "non-empty list"),
        ({"temperature": -1}, openai.BadRequestError, "temperature"),
        ({"max_tokens": 0}, openai.BadRequestError, "max_tokens"),
        ({"max_tokens": MAX_TOKENS + 1}, openai.BadRequestError, f"limit of {MAX_TOKENS}"),
        ({"n": 2}, openai.BadRequestError, "n=1"),
        ({"model": "no-such-model"}, openai.NotFoundError, "not served here"),
        ({"model": MLP}, openai.BadRequestError, "does not generate"),
        (
            {"messages": [{"role": "user", "content": "moon " * 3000}]},
            openai.BadRequestError,
            "limit is 2047 tokens",
        ),
        (
            {"max_tokens": 1450, "messages": [{"role": "user", "content": "moon " * 700}]},
            openai.BadRequestError,
            f"context window of {CONTEXT} tokens",
        ),
    ],
)
def test_bad_requests_get_openai_errors(
    client: openai.OpenAI, kw: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as refused:
        _chat(client, **kw)
    assert words in refused.value.body["message"]  # type: ignore[attr-defined]
    assert set(refused.value.body) == {"message", "type", "param", "code"}  # type: ignore[attr-defined]
    assert _chat(client, max_tokens=2).usage.completion_tokens <= 2  # still serving


def test_other_routes_refuse_an_llm_and_keep_their_shape(
    client: openai.OpenAI, served: Settings
) -> None:
    headers = {"Authorization": f"Bearer {client.api_key}"}
    url = f"{served.serve_url}/v1/models/{LLM}:predict"
    refused = httpx.post(url, json={"instances": ["hi"]}, headers=headers, timeout=30)
    assert refused.status_code == 400 and "/v1/chat/completions" in refused.json()["error"]
    bad = httpx.post(f"{served.serve_url}/v1/chat/completions", content=b"{", headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    anonymous = httpx.get(f"{served.serve_url}/v1/models")
    assert anonymous.status_code == 401 and "message" in anonymous.json()["error"]


def test_generating_needs_the_generate_permission(served: Settings) -> None:
    access = services.access(served)
    try:
        access.get_principal(name="llm-predict-only")
    except NotFoundError:
        access.create_principal(name="llm-predict-only", kind="service")
        access.grant(principal="llm-predict-only", action="model:predict", resource=LLM)
    token = access.issue_token(principal="llm-predict-only", expires_in=timedelta(hours=1)).token
    limited = _client(served, token)
    with pytest.raises(openai.PermissionDeniedError, match="model:generate"):
        _chat(limited)
    assert list(limited.models.list()) == []


def test_generations_are_audited_without_their_content(
    client: openai.OpenAI, served: Settings
) -> None:
    secret = "my secret moon"
    answer = _chat(client, messages=[{"role": "user", "content": secret}], max_tokens=3)
    audit = services.access(served).audit
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done = [
            e
            for e in audit.tail(50)
            if e.action == "model:generate" and e.detail and "completion_tokens=" in e.detail
        ]
        if done and f"prompt_tokens={answer.usage.prompt_tokens} " in done[-1].detail:
            break
        time.sleep(0.2)
    entry = done[-1]
    assert entry.resource == LLM and entry.outcome == "allow" and "version=1" in entry.detail
    assert "latency_ms=" in entry.detail and secret not in entry.detail


def test_concurrent_streams_all_finish_sharing_forward_passes(
    client: openai.OpenAI, served: Settings
) -> None:
    def stream(seed: int) -> tuple[str | None, int]:
        options = {"include_usage": True}
        chunks = list(_chat(client, max_tokens=40, seed=seed, stream=True, stream_options=options))
        return chunks[-2].choices[0].finish_reason, chunks[-1].usage.completion_tokens

    before = _stats()["steps"]
    with ThreadPoolExecutor(6) as pool:  # more than the 4 engine slots: some wait their turn
        results = list(pool.map(stream, range(6)))
    assert all(reason in ("stop", "length") for reason, _ in results)
    stats = _stats()
    assert stats["running"] == 0 and stats["waiting"] == 0
    # Continuous batching: concurrent sequences share decode steps (fewer steps than tokens).
    assert stats["steps"] - before < sum(tokens for _, tokens in results), (stats, results)


def test_a_client_that_disconnects_frees_its_slot(client: openai.OpenAI, served: Settings) -> None:
    long = {"max_tokens": 1400, "temperature": 0}
    reference = _chat(client, **long)
    assert reference.choices[0].finish_reason == "length"  # no end of sequence before 1400
    before = _stats()["steps"]
    with _chat(client, stream=True, **long) as stream:
        for _, _chunk in zip(range(3), stream):
            pass
    deadline = time.monotonic() + 20
    while _stats()["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    stats = _stats()
    assert stats["running"] == 0 and stats["steps"] - before < 1000, stats
    assert _chat(client, max_tokens=2).usage.completion_tokens <= 2


def test_token_attributions_through_the_explainer(client: openai.OpenAI, served: Settings) -> None:
    headers = {"Authorization": f"Bearer {client.api_key}"}
    url = f"{served.serve_url}/v1/models/{LLM}:explain"
    body = {"prompt": "the cat sees", "max_new_tokens": 3}
    explained = httpx.post(url, json=body, headers=headers, timeout=120)
    assert explained.status_code == 200, explained.text
    answer = explained.json()
    assert answer["model"] == LLM and answer["version"] == 1
    assert len(answer["sequence_attributions"]) == len(answer["prompt_tokens"]) == 4
    png = httpx.post(url + "?format=png", json=body, headers=headers, timeout=120)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    refused = httpx.post(url, json={"prompt": "x", "method": "magic"}, headers=headers)
    assert refused.status_code == 422 and "method" in refused.json()["error"]
