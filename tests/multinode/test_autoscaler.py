"""The real Ray autoscaler on the fake multi-node provider: demand adds a node, idleness removes it.

The head is started with ``--autoscaling-config`` naming the ``fake_multinode`` provider (the
autoscaler's own test provider: "launching" a node starts a local raylet). A task that needs
``{"gpu_node": 1}`` cannot run on the head, so the autoscaler launches a ``gpu_node`` node; once
the node has been idle for ``idle_timeout_minutes`` it is terminated. Not
``AutoscalingCluster.start()``: that runs ``ray stop --force``, which would kill every other
Ray cluster on the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from inhouse import local_cluster
from inhouse.config import load_settings
from tests.multinode.conftest import ports
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.scale]

SLOT = 2
IDLE_TIMEOUT_MINUTES = 0.1  # 6 s


def _config(gcs_address: str) -> dict[str, object]:
    return {
        "cluster_name": "inhouse-fake",
        "max_workers": 2,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": IDLE_TIMEOUT_MINUTES,
        "provider": {"type": "fake_multinode", "gcs_address": gcs_address},
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
            "gpu_node": {
                "resources": {"CPU": 1, "gpu_node": 1},
                "node_config": {},
                "min_workers": 0,
                "max_workers": 2,
            },
        },
        "head_node_type": "ray.head.default",
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


@pytest.fixture()
def autoscaling_head(tmp_path: Path) -> Iterator[str]:
    """A head with the fake-provider autoscaler on this slot's ports; stopped (all nodes) after."""
    import ray

    p = ports(SLOT)
    address = f"{ray.util.get_node_ip_address()}:{p.gcs}"
    config = tmp_path / "autoscaling.json"
    config.write_text(json.dumps(_config(address)))
    env = dict(os.environ, AUTOSCALER_UPDATE_INTERVAL_S="1", RAY_FAKE_CLUSTER="1")
    env.pop("RAY_ADDRESS", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = [
        local_cluster.ray_command(),
        "start",
        "--head",
        f"--port={p.gcs}",
        "--num-cpus=1",
        f"--autoscaling-config={config}",
        "--include-dashboard=false",
        f"--dashboard-agent-listen-port={p.agent}",
        f"--ray-client-server-port={20600 + p.gcs % 100}",
        "--disable-usage-stats",
    ]
    try:
        started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stderr[-3000:] or started.stdout[-3000:]
        ray.init(address=address, log_to_driver=False)
        yield address
    finally:
        ray.shutdown()
        local_cluster.stop(load_settings(ray={"gcs_port": p.gcs}))
        assert not local_cluster._cluster_processes(p.gcs)


def _alive_nodes() -> list[dict[str, object]]:
    import ray

    return [node for node in ray.nodes() if node["Alive"]]


def test_pending_demand_adds_a_node_and_idleness_removes_it(autoscaling_head: str) -> None:
    import ray

    assert len(_alive_nodes()) == 1

    @ray.remote(num_cpus=1, resources={"gpu_node": 1})
    def where() -> str:
        return ray.get_runtime_context().get_node_id()

    head = _alive_nodes()[0]["NodeID"]
    node = ray.get(where.remote(), timeout=180)  # pending until the autoscaler adds a node
    assert node != head
    assert any(n["NodeID"] == node and "gpu_node" in n["Resources"] for n in _alive_nodes())
    wait_for(lambda: len(_alive_nodes()) == 1, timeout_s=180, what="the idle node removed")
    assert _alive_nodes()[0]["NodeID"] == head
