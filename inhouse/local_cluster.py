"""The local single-node Ray cluster: token authentication on, everything bound to 127.0.0.1.

Started with the ``ray`` command of this environment (a subprocess: the core imports no
Ray). The token lives in ``<home>/ray_auth_token`` with mode 0600; every process we start
gets ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH`` so clients, jobs and replicas
authenticate, and this environment's ``bin`` first on ``PATH`` so ``python -m jobs.…`` in a
``ray job submit`` runs with the project's interpreter.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from inhouse.atomic import atomic_write_bytes
from inhouse.config import Settings
from inhouse.errors import ConfigError, UnavailableError

START_TIMEOUT_S = 90.0


def ensure_token(path: Path) -> str:
    """Return the cluster token, creating a 256-bit one (mode 0600) if there is none."""
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)  # e.g. written by `ray get-auth-token --generate`
        token = path.read_text().strip()
        if len(token) < 32:
            raise ConfigError(f"the Ray token in {path} is too short; delete it to make a new one")
        return token
    token = secrets.token_hex(32)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_bytes(path, token.encode(), mode=0o600)
    return token


def client_env(settings: Settings) -> dict[str, str]:
    """Environment variables a Ray client of this cluster needs (token auth, address, home)."""
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(settings.ray_token_path),
        "RAY_ADDRESS": settings.ray.dashboard_url,
        "INHOUSE_HOME": str(settings.home),
        **({"INHOUSE_DATABASE_URL": settings.database_url} if settings.database_url else {}),
    }


def process_env(settings: Settings) -> dict[str, str]:
    """The full environment for ``ray`` subprocesses: ours first on PATH, token auth on."""
    env = dict(os.environ)
    env.update(client_env(settings))
    env.pop("RAY_ADDRESS", None)  # `ray start --head` must not try to join an address
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def dashboard_up(settings: Settings) -> bool:
    """Whether the dashboard answers an authenticated request."""
    token = settings.ray_token_path.read_text().strip() if settings.ray_token_path.exists() else ""
    try:
        response = httpx.get(
            f"{settings.ray.dashboard_url}/api/version",
            headers={"Authorization": f"Bearer {token}"},
            timeout=2.0,
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def ray_command() -> str:
    """The ``ray`` executable of this environment."""
    candidate = Path(sys.executable).parent / "ray"
    return str(candidate) if candidate.exists() else "ray"


def ray_temp_dir(settings: Settings) -> Path:
    """Where this cluster's sessions, logs and sockets live (short: sockets have a limit)."""
    return Path(tempfile.gettempdir()) / f"inhouse-ray-{settings.ray.gcs_port}"


def start(settings: Settings) -> bool:
    """Start the head node unless it is already up; returns True if it was started now."""
    ensure_token(settings.ray_token_path)
    if dashboard_up(settings):
        return False
    cfg = settings.ray
    command = [
        ray_command(),
        "start",
        "--head",
        f"--port={cfg.gcs_port}",
        "--node-ip-address=127.0.0.1",
        f"--dashboard-host={cfg.dashboard_host}",
        f"--dashboard-port={cfg.dashboard_port}",
        f"--dashboard-agent-listen-port={cfg.agent_port}",
        f"--ray-client-server-port={cfg.client_port}",
        "--include-dashboard=true",
        "--disable-usage-stats",
        # Its own temp dir: job drivers resolve "auto" there, so two clusters on one host
        # (a demo beside tests) never send a job to the other one.
        f"--temp-dir={ray_temp_dir(settings)}",
    ]
    # Logical CPUs are scheduling tokens: at least 4, so a 2-worker training job fits
    # beside the Serve replicas on a 2-core laptop.
    command.append(f"--num-cpus={cfg.num_cpus or max(4, os.cpu_count() or 1)}")
    if cfg.num_gpus is not None:
        command.append(f"--num-gpus={cfg.num_gpus}")
    result = subprocess.run(
        command, env=process_env(settings), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise UnavailableError(f"`{shlex.join(command)}` failed: {' | '.join(tail)}")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not dashboard_up(settings):
        if time.monotonic() > deadline:
            stop(settings)  # no half-started head left behind to confuse the next start
            raise UnavailableError(
                f"the dashboard did not answer at {cfg.dashboard_url} within "
                f"{START_TIMEOUT_S:.0f} s; the head was stopped (logs: {ray_temp_dir(settings)})"
            )
        time.sleep(0.5)
    return True


def _ours(arg: str, gcs_port: int) -> bool:
    if arg == f"--gcs_server_port={gcs_port}":
        return True
    flag, _, value = arg.partition("=")
    return flag in ("--gcs-address", "--gcs_address") and value.endswith(f":{gcs_port}")


def _cluster_processes(gcs_port: int) -> list[psutil.Process]:
    """The processes started for the cluster on ``gcs_port`` (GCS, raylet, agents, dashboard)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(_ours(arg, gcs_port) for arg in process.info["cmdline"] or []):
            found.append(process)
    return found


def stop(settings: Settings) -> None:
    """Stop this cluster (the one on our GCS port) and everything on it, Serve included.

    Other Ray clusters on the machine are left alone: only processes started for our GCS
    port are signalled; their workers exit when their raylet goes.
    """
    processes = _cluster_processes(settings.ray.gcs_port)
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _gone, alive = psutil.wait_procs(processes, timeout=10)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


def submit_line(settings: Settings, entrypoint: str = "python -m jobs.train") -> str:
    """The shell line a user types to submit a job to this cluster with the token."""
    return (
        f"RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={settings.ray_token_path} "
        f"ray job submit --address {settings.ray.dashboard_url} --working-dir . -- {entrypoint}"
    )
