"""The local single-node Ray cluster: token authentication on, everything bound to 127.0.0.1.

Started with the ``ray`` command of this environment (a subprocess: the core imports no
Ray). The token lives in ``<home>/ray_auth_token`` with mode 0600; every process we start
gets ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH`` so clients, jobs and replicas
authenticate, and this environment's ``bin`` first on ``PATH`` so ``python -m inhouse.jobs.…`` in a
``ray job submit`` runs with the project's interpreter.

The token is only ever sent to a dashboard on this machine (:func:`token_url`): the Jobs API
speaks plain HTTP. Ray's temp dir sits in a private 0700 root (:func:`ray_temp_dir`) because
Ray makes its own directories 0777.
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
from inhouse.dburl import database_env
from inhouse.errors import ConfigError, UnavailableError
from inhouse.private_paths import private_root, reaches_only_this_machine

START_TIMEOUT_S = 90.0
# What Ray appends to --temp-dir for its longest socket path, with a 7-digit pid:
# /session_YYYY-MM-DD_HH-MM-SS_ffffff_<pid>/sockets/plasma_store; AF_UNIX allows 107 bytes.
_RAY_SOCKET_SUFFIX = len("/session_2025-01-01_00-00-00_000000_1234567/sockets/plasma_store")
_SOCKET_PATH_MAX = 107


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


def token_url(settings: Settings) -> str:
    """The dashboard URL, once it is known to stay on this machine: the Jobs API is plain
    HTTP, so the cluster token sent there must not cross a network.

    Raises:
        ConfigError: ``ray.dashboard_host`` is not a loopback (or unspecified) address.
    """
    host = settings.ray.dashboard_host
    if not reaches_only_this_machine(host):
        raise ConfigError(
            f"refusing to send the Ray cluster token over plain HTTP to {host}: "
            "ray.dashboard_host must be 127.0.0.1 (reach a remote head through an SSH "
            "tunnel: ssh -L 8265:127.0.0.1:8265 <head>)"
        )
    return settings.ray.dashboard_url


def client_env(settings: Settings) -> dict[str, str]:
    """Environment variables a Ray client of this cluster needs (token auth, address, home,
    the ``storage`` section).

    A database URL with a password travels as a 0600 file's path (:mod:`inhouse.dburl`);
    ``RAY_ADDRESS`` is left out when the dashboard is not on this machine (see
    :func:`token_url`).
    """
    env = {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(settings.ray_token_path),
        "INHOUSE_HOME": str(settings.home),
        **database_env(home=settings.home, url=settings.database_url),
        **settings.storage.env(),  # where registry and checkpoints live (no secrets)
    }
    if reaches_only_this_machine(settings.ray.dashboard_host):
        env["RAY_ADDRESS"] = settings.ray.dashboard_url
    return env


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
    url = token_url(settings)
    token = settings.ray_token_path.read_text().strip() if settings.ray_token_path.exists() else ""
    try:
        response = httpx.get(
            f"{url}/api/version",
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
    """Where this cluster's sessions, logs and sockets live: ``<tmp>/inhouse-<uid>/ray-<port>``.

    Short, because Ray's unix socket paths under it have a 107-byte limit (a state dir can be
    too deep). Ray makes this directory and everything in it 0777, so its parent is a private
    root: 0700, this user's, refused if it pre-exists otherwise (:func:`private_ray_temp_dir`).
    """
    root = Path(tempfile.gettempdir()) / f"inhouse-{os.getuid()}"
    return root / f"ray-{settings.ray.gcs_port}"


def private_ray_temp_dir(settings: Settings) -> Path:
    """:func:`ray_temp_dir`, with its private root created (or checked) first.

    Raises:
        ConfigError: the root pre-exists with another owner or a looser mode, or the path is
            too long for Ray's sockets.
    """
    temp = ray_temp_dir(settings)
    if len(str(temp)) + _RAY_SOCKET_SUFFIX > _SOCKET_PATH_MAX:
        raise ConfigError(
            f"Ray's temp dir {temp} is too long for its unix sockets "
            f"({_SOCKET_PATH_MAX} bytes); point TMPDIR at a shorter directory"
        )
    private_root(temp.parent)
    return temp


def start(settings: Settings) -> bool:
    """Start the head node unless it is already up; returns True if it was started now."""
    ensure_token(settings.ray_token_path)
    if dashboard_up(settings):
        return False
    cfg = settings.ray
    temp_dir = private_ray_temp_dir(settings)
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
        f"--temp-dir={temp_dir}",
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


def submit_line(settings: Settings, entrypoint: str = "python -m inhouse.jobs.train") -> str:
    """The shell line a user types to submit a job to this cluster with the token."""
    return (
        f"RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={settings.ray_token_path} "
        f"ray job submit --address {settings.ray.dashboard_url} --working-dir . -- {entrypoint}"
    )
