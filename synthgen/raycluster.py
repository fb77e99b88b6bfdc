"""Connecting to Ray: one policy for every command that runs on Ray (render, shard --ray).

- ``address`` given (``--address auto``, ``HOST:PORT``, ``ray://...``): join that cluster.
- else ``RAY_ADDRESS`` set in the environment (as ``ray job submit`` does for its entrypoint): join it.
- else start an **embedded local cluster** (``ray.init(address="local")``). Plain ``ray.init()``
  would silently join a cluster that ``ray start`` left running on this machine (Ray's
  ``/tmp/ray/ray_current_cluster``), with that cluster's resources, authentication and lifetime;
  a job meant to run locally must not depend on such leftovers.
"""

from __future__ import annotations

import logging
import os
from typing import Any


def init_ray(address: str | None = None, **kwargs: Any) -> bool:
    """Initialise Ray per the module's policy unless it already is; returns True when this call
    started (or joined) Ray, so the caller shuts it down afterwards.

    ``kwargs`` go to ``ray.init`` (defaults: no dashboard, warnings-only logging).

    Raises:
        ConnectionError: the cluster at ``address`` / ``RAY_ADDRESS`` cannot be reached (from Ray).
    """
    import ray

    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "logging_level": logging.WARNING, **kwargs}
    from .runtime import quiet_local_ray_auth

    quiet_local_ray_auth(address)  # embedded cluster: token auth stays on, without Ray's start-up warning
    if not address and not os.environ.get("RAY_ADDRESS"):
        address = "local"
    ray.init(address=address or None, **kwargs)
    return True
