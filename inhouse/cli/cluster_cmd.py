"""``inhouse cluster up|down|status|env``, ``inhouse certs init`` and ``inhouse tensorboard``.

The machine-local operations: the single-node Ray cluster, Serve's TLS certificates and a
TensorBoard on the runs directory. Ray itself is started as a process
(:mod:`inhouse.local_cluster`), never imported here.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from inhouse import local_cluster
from inhouse.cli.parser import leaf
from inhouse.config import Settings
from inhouse.console import step


def add_parser(commands: Any) -> None:
    """Register ``cluster``, ``tensorboard`` and ``certs`` on the ``inhouse`` sub-parsers."""
    text = "start, stop or inspect the local Ray cluster"
    cluster = commands.add_parser("cluster", help=text, description=text)
    acts = cluster.add_subparsers(dest="action", required=True, metavar="ACTION")
    leaf(acts, "up", cmd_cluster_up, "start a single-node Ray cluster (idempotent)")
    leaf(acts, "down", cmd_cluster_down, "stop the cluster and everything on it")
    leaf(acts, "status", cmd_cluster_status, "is the cluster up, is Serve answering")
    leaf(acts, "env", cmd_cluster_env, "print the exports a Ray client needs")

    board = leaf(
        commands,
        "tensorboard",
        cmd_tensorboard,
        "start TensorBoard on the runs directory, bound to 127.0.0.1",
    )
    board.add_argument("--port", type=int, default=6006, help="TCP port (default 6006)")

    text = "TLS certificates for Serve's HTTPS"
    certs = commands.add_parser("certs", help=text, description=text)
    acts = certs.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = leaf(
        acts, "init", cmd_certs_init, "make a private CA and a server certificate (keys mode 0600)"
    )
    init.add_argument(
        "--host",
        action="append",
        help="DNS name or IP the certificate covers (repeatable; default localhost and 127.0.0.1)",
    )
    init.add_argument("--force", action="store_true", help="replace existing certificates")


def cmd_cluster_up(settings: Settings, _args: argparse.Namespace) -> int:
    with step("starting the local Ray cluster (token auth on)"):
        started = local_cluster.start(settings)
    print(
        ("started" if started else "already running") + f": dashboard {settings.ray.dashboard_url}"
    )
    print(f"token: {settings.ray_token_path} (mode 0600)")
    return 0


def cmd_cluster_down(settings: Settings, _args: argparse.Namespace) -> int:
    with step("stopping the local Ray cluster and Serve"):
        local_cluster.stop(settings)
    print("stopped")
    return 0


def cmd_cluster_status(settings: Settings, _args: argparse.Namespace) -> int:
    up = local_cluster.dashboard_up(settings)
    print(f"cluster: {'up' if up else 'down'}  dashboard {settings.ray.dashboard_url}")
    if up:
        import httpx

        try:
            ready = httpx.get(f"{settings.serve_url}/v2/health/ready", timeout=2).status_code
            print(f"serve: {settings.serve_url} (/v2/health/ready -> {ready})")
        except httpx.HTTPError:
            print(f"serve: not answering at {settings.serve_url}; run `inhouse deploy`")
    return 0 if up else 3


def cmd_cluster_env(settings: Settings, _args: argparse.Namespace) -> int:
    for key, value in local_cluster.client_env(settings).items():
        print(f"export {key}={value}")
    return 0


def cmd_tensorboard(settings: Settings, args: argparse.Namespace) -> int:
    binary = Path(sys.executable).parent / "tensorboard"
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    print(f"TensorBoard on {settings.runs_dir}: http://127.0.0.1:{args.port} (Ctrl-C to stop)")
    command = [
        str(binary),
        "--logdir",
        str(settings.runs_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
    ]
    return subprocess.run(command, check=False).returncode


def cmd_certs_init(settings: Settings, args: argparse.Namespace) -> int:
    from inhouse.tls import init_certificates

    hosts = args.host or ["localhost", "127.0.0.1"]
    made = init_certificates(settings.tls_dir, hosts=hosts, force=args.force)
    print(f"private CA {made.ca_cert}; server certificate {made.server_cert} for {hosts}")
    print("serve over HTTPS (then `inhouse deploy`; restart Serve if it runs plain HTTP):")
    print(f"  export INHOUSE_SECURITY__TLS_CERTFILE={made.server_cert}")
    print(f"  export INHOUSE_SECURITY__TLS_KEYFILE={made.server_key}")
    print(f"clients trust {made.ca_cert} (curl --cacert, httpx verify=)")
    return 0
