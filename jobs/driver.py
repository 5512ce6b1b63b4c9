"""How a job's driver (``python -m inhouse.jobs.<name>``) joins the cluster it was submitted to."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def joined_cluster() -> Iterator[None]:
    """Connect to the cluster (``RAY_ADDRESS``, which Ray's job supervisor sets, else the
    local one) unless already connected; disconnect when the job is done."""
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=True)
    try:
        yield
    finally:
        ray.shutdown()
