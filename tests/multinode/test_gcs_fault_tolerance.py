"""GCS fault tolerance: the head's GCS keeps its tables in Redis, is killed under load, restarts.

The local Redis (127.0.0.1:6379) is the external store (``RAY_REDIS_ADDRESS``); the GCS itself
listens on its own port, and a unique ``RAY_external_storage_namespace`` keeps this cluster's
keys apart; they are deleted afterwards. While the GCS is down, Serve keeps answering (the
proxy and replicas route without it); after the restart the GCS reloads its tables from Redis,
the raylets and workers reconnect, and the cluster takes new work again.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.multinode.conftest import head_args, ports, worker_args
from tests.multinode.test_serve_multinode import SteadyClient, _deploy
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SLOT = 3
REDIS = ("127.0.0.1", 6379)


def _redis_keys(namespace: str) -> list[str]:
    """Keys of this namespace in the local Redis (read with ``redis-cli``)."""
    listing = subprocess.run(
        ["redis-cli", "-h", REDIS[0], "-p", str(REDIS[1]), "--scan", "--pattern", f"*{namespace}*"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return listing.stdout.split()


@pytest.fixture()
def external_redis(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the next head at the local Redis under a fresh namespace; delete its keys after."""
    from ray._private.gcs_utils import cleanup_redis_storage

    namespace = f"inhouse-test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("RAY_REDIS_ADDRESS", f"{REDIS[0]}:{REDIS[1]}")
    monkeypatch.setenv("RAY_external_storage_namespace", namespace)
    yield namespace
    cleanup_redis_storage(
        host=REDIS[0], port=REDIS[1], password="", use_ssl=False, storage_namespace=namespace
    )
    assert _redis_keys(namespace) == []


def test_serve_answers_through_a_gcs_restart(external_redis: str, make_cluster: Any) -> None:
    # external_redis first: its cleanup runs after make_cluster has stopped the GCS.
    import ray

    cluster = make_cluster(
        SLOT, head=head_args(SLOT, num_cpus=1), workers=[worker_args(serve_slot=1)]
    )
    assert os.environ["RAY_REDIS_ADDRESS"].endswith(":6379")
    assert cluster.head_node.gcs_address.endswith(f":{ports(SLOT).gcs}")  # not Redis's port
    _deploy(SLOT)
    assert _redis_keys(external_redis), "the GCS writes its tables to Redis"

    @ray.remote(num_cpus=0)
    class Counter:
        def __init__(self) -> None:
            self.n = 0

        def add(self) -> int:
            self.n += 1
            return self.n

    counter = Counter.options(name="survivor", lifetime="detached").remote()
    assert ray.get(counter.add.remote()) == 1
    url = f"http://127.0.0.1:{ports(SLOT).serve}/mlp"
    with SteadyClient(url) as client:
        wait_for(lambda: client.successes_since(0) >= 20, timeout_s=60, what="Serve answering")
        killed_at = time.monotonic()
        cluster.head_node.kill_gcs_server()
        # Direct calls to existing actors do not go through the GCS either.
        assert ray.get(counter.add.remote(), timeout=30) == 2
        wait_for(
            lambda: client.successes_since(killed_at) >= 50,
            timeout_s=60,
            what="Serve answering with the GCS down",
        )
        down_for = time.monotonic() - killed_at
        cluster.head_node.start_gcs_server()
        restarted_at = time.monotonic()

        # The restarted GCS knows the cluster again: nodes, named actors, new work.
        wait_for(
            lambda: sum(n["Alive"] for n in ray.nodes()) == 2,
            timeout_s=60,
            what="both nodes alive in the restarted GCS",
        )
        assert ray.get(ray.get_actor("survivor").add.remote(), timeout=60) == 3
        assert ray.get(ray.remote(lambda: "new task").options(num_cpus=0).remote(), timeout=60)
        _deploy(SLOT)  # Serve's controller accepts a new deployment
        wait_for(
            lambda: client.successes_since(restarted_at) >= 50,
            timeout_s=60,
            what="Serve answering after the restart",
        )

    calls = [(t - killed_at, ok) for t, ok, _ in client.calls if t > killed_at]
    failed = [round(t, 2) for t, ok in calls if not ok]
    print(f"GCS down {down_for:.1f} s; calls since the kill {len(calls)}, failed at {failed}")
    assert len(failed) <= 5
    ray.kill(ray.get_actor("survivor"))
