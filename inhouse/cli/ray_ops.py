"""The CLI's Ray-facing operations: submit and follow jobs, deploy the Serve app.

Ray is imported inside these functions only, so ``inhouse --help`` and the local commands start
fast and the core stays Ray-free.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from inhouse import local_cluster
from inhouse.config import Settings
from inhouse.console import EPOCH_MARKER, RESULT_MARKER, progress
from inhouse.errors import UnavailableError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SUBMIT_TIMEOUT_S = 90.0


def _submit(client: Any, **job: Any) -> str:
    """Submit, waiting out a just-started head whose job agent is not up yet."""
    deadline = time.monotonic() + SUBMIT_TIMEOUT_S
    while True:
        try:
            job_id: str = client.submit_job(**job)
            return job_id
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise UnavailableError(f"cannot submit the job: {exc}") from None
            time.sleep(1.0)


def run_job(settings: Settings, module: str, argv: list[str], *, epochs: int = 0) -> dict[str, Any]:
    """Submit ``python -m <module> <argv>`` as a Ray job, follow it, return its result line."""
    import shlex

    from ray.job_submission import JobStatus, JobSubmissionClient

    if not local_cluster.dashboard_up(settings):
        raise UnavailableError(
            f"no cluster answers at {settings.ray.dashboard_url}; run `inhouse cluster up`"
        )
    client = JobSubmissionClient(local_cluster.token_url(settings))
    # The Jobs API and the dashboard show these: a database URL with a password travels
    # as a 0600 file's path (inhouse.dburl), never as itself.
    env = local_cluster.client_env(settings)
    env.pop("RAY_ADDRESS", None)
    revision = os.popen(
        f"git -C {shlex.quote(str(PROJECT_ROOT))} rev-parse --short HEAD 2>/dev/null"
    )
    env["INHOUSE_CODE_REVISION"] = revision.read().strip() or "unknown"
    job_id = _submit(
        client,
        entrypoint=shlex.join(["python", "-m", module, *argv]),
        runtime_env={
            "working_dir": str(PROJECT_ROOT),
            "env_vars": env,
            "excludes": [".venv", ".git", "benchmarks/results"],
        },
    )
    print(f"submitted Ray job {job_id}; watch it at {settings.ray.dashboard_url}/#/jobs/{job_id}")
    seen, result, epochs_done = 0, None, 0
    bar = progress(total=epochs, desc="epochs", unit="epoch") if epochs else None
    while True:
        status = client.get_job_status(job_id)
        logs = client.get_job_logs(job_id)
        for line in logs.splitlines()[seen:]:
            if EPOCH_MARKER in line and bar is not None:
                metrics = json.loads(line.split(EPOCH_MARKER, 1)[1])
                if metrics["epoch"] + 1 > epochs_done:  # Ray may echo a line twice
                    bar.update(metrics["epoch"] + 1 - epochs_done)
                    epochs_done = metrics["epoch"] + 1
                    held_out = {  # test_acc, probe_acc: what the kind measures
                        key.removesuffix("uracy"): f"{value:.3f}"
                        for key, value in metrics.items()
                        if key.endswith("_accuracy") and key != "train_accuracy"
                    }
                    bar.set_postfix(loss=f"{metrics['train_loss']:.3f}", **held_out)
            elif RESULT_MARKER in line:
                result = json.loads(line.split(RESULT_MARKER, 1)[1])
        seen = len(logs.splitlines())
        if status in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
            break
        time.sleep(1.0)
    if bar is not None:
        bar.close()
    if status != JobStatus.SUCCEEDED or result is None:
        tail = "\n".join(logs.splitlines()[-15:])
        raise UnavailableError(f"job {job_id} {status}; last log lines:\n{tail}")
    summary: dict[str, Any] = result
    return summary


def compress_args(args: argparse.Namespace) -> list[str]:
    argv = ["--model", args.model, "--version", args.version]
    for flag, value in (
        ("--prune", args.prune),
        ("--prune-steps", args.prune_steps),
        ("--quantize", args.quantize),
        ("--finetune-epochs", args.finetune_epochs),
        ("--max-accuracy-drop", args.max_accuracy_drop),
        ("--max-perplexity-increase", args.max_perplexity_increase),
        ("--min-size-ratio", args.min_size_ratio),
    ):
        if value is not None:
            argv += [flag, str(value)]
    if args.structured is not None:
        argv.append("--structured" if args.structured else "--no-structured")
    if not args.promote:
        argv.append("--no-promote")
    return argv


def deploy(
    settings: Settings, models: list[str], *, ref: str = "champion", batching: bool = True
) -> None:
    """Deploy (or update) the Serve application for ``models`` on the running cluster."""
    import ray
    from ray import serve

    from inhouse.config import ServeArgs
    from inhouse.serve.app import APP_NAME, build_app

    # Joined for this call only, unless an earlier step of the same command (the demo's
    # coordinator act) is still connected: then that connection is used and kept.
    joined = not ray.is_initialized()
    if joined:
        ray.init(
            address=f"127.0.0.1:{settings.ray.gcs_port}",
            logging_level=logging.ERROR,
            log_to_driver=False,
        )
    try:
        http: dict[str, Any] = {"host": settings.serve.host, "port": settings.serve.port}
        if settings.tls:
            http.update(
                ssl_certfile=str(settings.security.tls_certfile),
                ssl_keyfile=str(settings.security.tls_keyfile),
            )
        serve.start(http_options=http)
        args = ServeArgs(
            models=models,
            ref=ref,
            home=str(settings.home),
            database_url=settings.database_url,
            batching=batching,
        )
        run_app(build_app(args), name=APP_NAME, route_prefix="/")
    finally:
        if joined:
            ray.shutdown()


def run_app(app: Any, *, name: str, route_prefix: str) -> None:
    """``serve.run``; a replica that fails to start is an error naming the deployment and its
    own reason (a builder it cannot import, a missing key), not Serve's bare "failed".

    Raises:
        UnavailableError: the application did not deploy.
    """
    from ray import serve

    try:
        serve.run(app, name=name, route_prefix=route_prefix)
    except RuntimeError as exc:
        reasons = replica_errors(name)
        raise UnavailableError(
            f"deploying {name} failed: {'; '.join(reasons) if reasons else exc}"
        ) from None


_INHOUSE_ERROR = re.compile(r"^inhouse\.errors\.\w+: (.+)$")


def replica_errors(app_name: str) -> list[str]:
    """``"<deployment>: <reason>"`` for each failed deployment of ``app_name``: the last inhouse
    error of its replica's traceback, else the traceback's last line."""
    from ray import serve

    status = serve.status().applications.get(app_name)
    if status is None:
        return []
    reasons = []
    for deployment, state in status.deployments.items():
        lines = [line.strip() for line in str(state.message or "").splitlines() if line.strip()]
        if str(state.status).endswith(("DEPLOY_FAILED", "UNHEALTHY")) and lines:
            ours = [m.group(1) for m in map(_INHOUSE_ERROR.match, lines) if m]
            reasons.append(f"{deployment}: {ours[-1] if ours else lines[-1]}")
    return reasons
