"""Watchdog of an embedded Ray cluster: kills its processes when the driver that started it dies.

Run as a script by :func:`synthgen.raycluster.start_ray` (``python raywatch.py DRIVER_PID``; it imports
nothing of synthgen, so it starts in milliseconds). Its stdin is a pipe whose write end only the
driver holds; the driver sends one JSON line ``{"roots": [[pid, start_ticks], ...]}`` naming the
processes ``ray.init`` started (gcs_server, raylet, monitor, dashboard, log monitor). Every second
the watchdog records those roots and all their descendants (workers, dashboard and runtime-env
agents). When the pipe reaches end of file (the driver exited, however: normally, by exception,
or by SIGKILL), it SIGKILLs every recorded process still alive with the same start time, i.e. what
Ray's own fate sharing leaves behind (the agents, re-parented to init, survive a killed driver),
and exits. It ignores SIGINT/SIGTERM/SIGHUP and runs in its own session, so a Ctrl-C or a signal
to the driver's process group does not stop it before it has cleaned up.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time


def _table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, start ticks) of every process (Linux /proc)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
            if f[0] in ("Z", "X"):
                continue
            out[int(name)] = (int(f[1]), int(f[19]))
        except (OSError, ValueError, IndexError):
            continue
    return out


def _descendants(roots: dict[int, int], table: dict[int, tuple[int, int]]) -> dict[int, int]:
    """``roots`` (pid -> start) still alive plus all their descendants in ``table``."""
    alive = {p: s for p, s in roots.items() if p in table and table[p][1] == s}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out = dict(alive)
    todo = list(alive)
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out[c] = table[c][1]
                todo.append(c)
    return out


def kill_all(tracked: dict[int, int]) -> int:
    """SIGKILL every ``pid -> start`` still alive (same start time) and its descendants; returns the count."""
    table = _table()
    victims = _descendants(tracked, table)
    victims.pop(os.getpid(), None)
    n = 0
    for pid, start in victims.items():
        if table.get(pid, (0, None))[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
                n += 1
            except OSError:
                pass
    return n


def main(argv: list[str]) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    roots: dict[int, int] = {}
    tracked: dict[int, int] = {}
    buf = b""
    fd = sys.stdin.fileno()
    while True:
        r, _, _ = select.select([fd], [], [], 1.0)
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                break  # the driver is gone (or done): clean up
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                roots.update({int(p): int(s) for p, s in msg.get("roots", [])})
        table = _table()
        still = {p: s for p, s in tracked.items() if table.get(p, (0, None))[1] == s}
        tracked = {**still, **_descendants(roots, table)}
        tracked.pop(os.getpid(), None)
    time.sleep(0.2)  # let a normal ray.shutdown() finish its own terminations first
    kill_all(tracked)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
