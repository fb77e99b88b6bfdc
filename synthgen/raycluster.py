"""Connecting to Ray: one policy for every command that runs on Ray (render, shard --ray).

- ``address`` given (``--address auto``, ``HOST:PORT``, ``ray://...``): join that cluster.
- else ``RAY_ADDRESS`` set in the environment (as ``ray job submit`` does for its entrypoint): join it.
- else start an **embedded local cluster** (``ray.init(address="local")``). Plain ``ray.init()``
  would silently join a cluster that ``ray start`` left running on this machine (Ray's
  ``/tmp/ray/ray_current_cluster``), with that cluster's resources, authentication and lifetime;
  a job meant to run locally must not depend on such leftovers.

An embedded cluster belongs to the driver (:func:`start_ray`, :class:`EmbeddedCluster`):

- its processes are known (the children ``ray.init`` started: gcs_server, raylet, monitor,
  dashboard, log monitor; plus their descendants: workers, dashboard and runtime-env agents);
- :meth:`EmbeddedCluster.lost` says when its raylet or GCS died, so a run ends instead of waiting
  for workers that cannot come back;
- a watchdog process (:mod:`synthgen.raywatch`) kills whatever of it survives the driver, even a
  SIGKILLed driver (Ray's own fate sharing ends the raylet and GCS, but its agents live on);
- :meth:`EmbeddedCluster.record` goes into the store's lock file, so a later driver that finds the
  lock of a dead one can stop that one's leftovers (:func:`kill_recorded`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("synthgen.ray")


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


def check_address(address: str | None, timeout: float = 10.0) -> None:
    """Fail fast on a ``HOST:PORT`` or ``ray://HOST:PORT`` address nothing listens on (``ray.init``
    itself retries for minutes). ``auto``, an empty address and other forms are left to Ray.

    Raises:
        ConnectionError: naming the address and the reason.
    """
    import socket

    if not address or address == "auto" or address == "local":
        return
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = hostport.rstrip("/").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ConnectionError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc})") from None


def is_embedded(address: str | None) -> bool:
    """Whether :func:`init_ray` with ``address`` starts an embedded local cluster."""
    return not address and not os.environ.get("RAY_ADDRESS")


def _proc(pid: int) -> tuple[int, int, str] | None:
    """(ppid, start ticks, comm) of a live (non-zombie) process, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    head, _, rest = stat.rpartition(")")
    f = rest.split()
    if not f or f[0] in ("Z", "X"):
        return None
    return int(f[1]), int(f[19]), head.partition("(")[2]


def _children(pid: int) -> dict[int, tuple[int, str]]:
    """Live children of ``pid``: child pid -> (start ticks, comm)."""
    out = {}
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if name.isdigit():
                p = _proc(int(name))
                if p and p[0] == pid:
                    out[int(name)] = (p[1], p[2])
    return out


def _is_ray(pid: int) -> bool:
    """Whether the process runs Ray code (its command line names Ray's package or binaries)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().lower()
    except OSError:
        return False
    return b"/ray/" in cmd or b"ray::" in cmd or b"raylet" in cmd or b"gcs_server" in cmd


class EmbeddedCluster:
    """The processes of the embedded cluster this driver started (see the module docstring)."""

    def __init__(self, roots: dict[int, tuple[int, str]], session_dir: str | None = None):
        self.roots = roots  # pid -> (start ticks, comm)
        self.session_dir = session_dir
        self._watch: subprocess.Popen | None = None

    @classmethod
    def capture(cls, before: set[int]) -> "EmbeddedCluster":
        """The children this process started since ``before`` (its children then) that are Ray's."""
        roots = {p: v for p, v in _children(os.getpid()).items() if p not in before and _is_ray(p)}
        session = None
        with contextlib.suppress(Exception):
            import ray

            session = ray._private.worker._global_node.get_session_dir_path()
        return cls(roots, session)

    def pids(self, comm: str) -> list[int]:
        return [p for p, (_, c) in self.roots.items() if c == comm]

    def lost(self) -> str | None:
        """Why the cluster cannot run work any more (its raylet or GCS exited), or None."""
        for p, (start, comm) in self.roots.items():
            if comm in ("raylet", "gcs_server"):
                cur = _proc(p)
                if cur is None or cur[1] != start:
                    return f"the embedded Ray cluster's {comm} (pid {p}) exited"
        return None

    def record(self) -> dict[str, Any]:
        """For the lock file: session dir and ``[pid, start, comm]`` of the roots and their descendants."""
        from .raywatch import _descendants, _table

        table = _table()
        everything = _descendants({p: s for p, (s, _) in self.roots.items()}, table)
        names = {p: (_proc(p) or (0, 0, "?"))[2] for p in everything}
        return {"session_dir": self.session_dir, "driver": os.getpid(),
                "pids": [[p, s, names[p]] for p, s in sorted(everything.items())]}

    def start_watchdog(self) -> None:
        """Start :mod:`synthgen.raywatch` for this cluster (best effort; logs when it cannot)."""
        try:
            self._watch = subprocess.Popen(
                [sys.executable, "-S", str(Path(__file__).with_name("raywatch.py")), str(os.getpid())],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True)
            self._watch.stdin.write((json.dumps({"roots": [[p, s] for p, (s, _) in self.roots.items()]}) + "\n").encode())
            self._watch.stdin.flush()
        except OSError as exc:
            log.warning("could not start the Ray watchdog (%s); a killed driver may leave Ray processes behind", exc)
            self._watch = None

    def close(self) -> None:
        """After ``ray.shutdown()``: let the watchdog kill what is left and exit."""
        if self._watch is not None:
            with contextlib.suppress(OSError):
                self._watch.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._watch.wait(timeout=5)
            self._watch = None


def start_ray(address: str | None = None, **kwargs: Any) -> tuple[bool, EmbeddedCluster | None]:
    """:func:`init_ray`, and for an embedded cluster the :class:`EmbeddedCluster` (watchdog running).

    Returns ``(started, cluster)``: ``started`` as :func:`init_ray`; ``cluster`` None when joining
    a cluster (or when Ray was already initialised).
    """
    embedded = is_embedded(address)
    before = set(_children(os.getpid())) if embedded else set()
    started = init_ray(address, **kwargs)
    if not (started and embedded):
        return started, None
    cluster = EmbeddedCluster.capture(before)
    cluster.start_watchdog()
    return started, cluster


def kill_recorded(rec: dict[str, Any] | None) -> int:
    """Kill the processes of :meth:`EmbeddedCluster.record` that still run (same start time) and
    their descendants; returns how many. For the leftovers of a driver that died."""
    if not rec or not rec.get("pids"):
        return 0
    from .raywatch import kill_all

    with contextlib.suppress(Exception):
        return kill_all({int(p): int(s) for p, s, *_ in rec["pids"]})
    return 0

