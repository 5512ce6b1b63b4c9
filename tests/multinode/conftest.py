"""Multi-node Ray clusters on one machine, one per test, started and fully stopped by the test.

``ray.cluster_utils.Cluster`` runs a head and worker nodes (a raylet each) as local processes,
so node failures are real process deaths. Token authentication is on (the session conftest
set ``RAY_AUTH_MODE``/``RAY_AUTH_TOKEN_PATH`` before Ray was imported; the token is made here).
Ports never touch the defaults or the session cluster's: GCS ``6600 + 10*offset + slot``,
dashboard agent ``53600 + …``, Serve HTTP ``8600 + …``, with ``INHOUSE_TEST_PORT_OFFSET``.
These tests do not use the session ``ray_cluster``: run them in their own pytest process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from inhouse import local_cluster
from inhouse.config import load_settings

local_cluster.ensure_token(Path(os.environ["RAY_AUTH_TOKEN_PATH"]))
ROOT = Path(__file__).resolve().parents[2]
_OFFSET = int(os.environ.get("INHOUSE_TEST_PORT_OFFSET", "0")) * 10


@dataclass(frozen=True)
class Ports:
    """The fixed ports of one test's cluster."""

    gcs: int
    agent: int
    serve: int


def ports(slot: int) -> Ports:
    """Ports of the cluster in ``slot`` (one slot per test module, 0-9)."""
    return Ports(
        gcs=6600 + _OFFSET + slot, agent=53600 + _OFFSET + slot, serve=8600 + _OFFSET + slot
    )


def head_args(slot: int, *, num_cpus: float = 1, **extra: Any) -> dict[str, Any]:
    """``Cluster`` head-node arguments on this slot's ports (no dashboard: not needed here)."""
    p = ports(slot)
    return {
        "gcs_server_port": p.gcs,
        "dashboard_agent_listen_port": p.agent,
        "include_dashboard": False,
        "num_cpus": num_cpus,
        **extra,
    }


def worker_args(*, num_cpus: float = 1, **resources: float) -> dict[str, Any]:
    """A worker node with ``num_cpus`` and custom ``resources`` (to pin work onto it)."""
    return {"num_cpus": num_cpus, "resources": resources}


@pytest.fixture()
def make_cluster() -> Iterator[Callable[..., Any]]:
    """Start ``Cluster(head) + workers`` and connect; everything is stopped after the test."""
    import ray
    from ray.cluster_utils import Cluster

    clusters: list[tuple[Any, int]] = []

    def make(slot: int, *, head: dict[str, Any], workers: list[dict[str, Any]]) -> Any:
        cluster = Cluster(initialize_head=True, head_node_args=head)
        clusters.append((cluster, head["gcs_server_port"]))
        for worker in workers:
            cluster.add_node(**worker)
        cluster.wait_for_nodes()
        # Workers import the test modules (train loops, deployments) as pytest did.
        path = os.pathsep.join([str(ROOT), str(ROOT / "tests" / "multinode")])
        ray.init(
            address=cluster.address,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": path}},
        )
        return cluster

    yield make
    with contextlib.suppress(Exception):
        from ray import serve

        if ray.is_initialized():
            serve.shutdown()
    ray.shutdown()
    for cluster, gcs_port in clusters:
        cluster.shutdown()
        # Anything still bound to this GCS (e.g. a node an autoscaler started) goes too.
        local_cluster.stop(load_settings(ray={"gcs_port": gcs_port}))
        assert not local_cluster._cluster_processes(gcs_port)
