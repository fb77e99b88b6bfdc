"""One writer per sample store: an exclusive lock on ``STORE/_meta/lock``.

``synthgen render`` holds the lock from before it writes anything into the store until it has
written its summary, so two drivers never render the same samples twice, and neither removes the
other's in-flight ``.tmp-*`` files (with the lock held, every ``.tmp-*`` file of the store belongs
to a writer that is gone: see :func:`synthgen.store.clean_tmp`).

The lock file holds JSON naming its holder: ``host``, ``pid``, ``pid_start`` (the process's start
time in clock ticks since boot, so a recycled pid is not mistaken for the holder), ``boot_id``,
``started`` (unix time), ``argv`` and, once Ray runs, ``ray`` (the embedded cluster's session and
process ids, see :mod:`synthgen.raycluster`).

Two ways to lock (``SYNTHGEN_STORE_LOCK``):

- ``flock`` (default): ``fcntl.flock(LOCK_EX | LOCK_NB)`` on the lock file. The kernel drops the
  lock when the holder dies, however it dies, so a lock left by a killed driver is simply taken
  over (with a message naming the dead holder). Works on local filesystems and on NFS (Linux
  emulates flock with NFS byte-range locks); on Lustre only when mounted with ``-o flock``.
- ``excl``: the lock file is created with ``O_CREAT | O_EXCL`` and removed on release. For
  filesystems where flock fails (it is then used automatically) or is local to one client
  (NFS mounted with ``local_lock=flock|all``; set the variable yourself). A lock left by a dead
  holder on *this* host is detected (same boot, pid gone or reused) and taken over.

A holder on another host cannot be checked from here: such a lock is reported, and
``--force-unlock`` (``force_unlock=True``) removes it once you know that driver is gone. It never
breaks a lock whose holder is provably alive on this host.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from .errors import StoreLockedError

log = logging.getLogger("synthgen.store")

LOCK_FILE = "lock"
ENV_MODE = "SYNTHGEN_STORE_LOCK"
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_start(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid: int, start: int | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie) and, when ``start`` is given, is the process that started then."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        stat = None
    if stat is None:  # no /proc: signal 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return False
    return start is None or int(fields[19]) == int(start)


def me() -> dict[str, Any]:
    """This process as a lock holder."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": process_start(os.getpid()),
            "boot_id": _boot_id(), "started": time.time(),
            "argv": [os.path.basename(sys.argv[0]) if sys.argv else "python", *sys.argv[1:12]]}


def holder_state(h: dict[str, Any] | None) -> str:
    """``"alive"``, ``"dead"`` (same host and boot, process gone or pid reused) or ``"unknown"``
    (another host: cannot be checked from here)."""
    if not h or "pid" not in h:
        return "dead"
    if h.get("host") != socket.gethostname():
        return "unknown"
    if h.get("boot_id") and _boot_id() and h["boot_id"] != _boot_id():
        return "dead"  # the machine rebooted since
    return "alive" if process_alive(int(h["pid"]), h.get("pid_start")) else "dead"


def describe(h: dict[str, Any] | None) -> str:
    if not h:
        return "holder unknown (empty lock file)"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h.get("started", 0)))
    age = time.time() - h.get("started", time.time())
    cmd = " ".join(str(a) for a in h.get("argv", []))[:200]
    return f"pid {h.get('pid')} on host {h.get('host')}, started {when} ({age:.0f} s ago)" + (f": {cmd}" if cmd else "")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text("utf-8")
    except (OSError, ValueError):
        return None
    try:
        d = json.loads(text)
    except ValueError:
        return None
    return d if isinstance(d, dict) else None


class StoreLock:
    """The exclusive lock of one store (see the module docstring). Use as a context manager or
    call :meth:`acquire` / :meth:`release`.

    Attributes:
        stale: the previous holder when a stale lock was taken over, else None.
        mode: ``"flock"`` or ``"excl"`` once acquired.
    """

    def __init__(self, store: str | os.PathLike, what: str = "synthgen render",
                 path: str | os.PathLike | None = None):
        """``store``: the folder to lock; ``what``: the command, for messages; ``path``: the lock
        file (default ``STORE/_meta/lock``; e.g. a shard folder may prefer ``OUT/.synthgen-lock``)."""
        from .contract import META_DIR

        self.store = Path(store)
        self.path = Path(path) if path is not None else self.store / META_DIR / LOCK_FILE
        self.what = what
        self.fd: int | None = None
        self.mode: str | None = None
        self.stale: dict[str, Any] | None = None
        self.info: dict[str, Any] = {}

    # ---- acquire
    def acquire(self, force_unlock: bool = False) -> "StoreLock":
        """Take the lock or raise :class:`StoreLockedError` naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.info = me()
        if os.environ.get(ENV_MODE, "flock").lower() == "excl":
            return self._acquire_excl(force_unlock)
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self._refuse(_read(self.path), "alive")
            except OSError as exc:
                os.close(fd)
                if exc.errno in _NO_FLOCK:
                    log.info("%s: flock not supported here (%s); using an O_EXCL lock file", self.path, exc.strerror)
                    return self._acquire_excl(force_unlock)
                raise
            try:  # a releasing holder may have removed the file we opened: lock the current one
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            try:
                self._take_over(_read(self.path), force_unlock)
            except BaseException:
                os.close(fd)
                raise
            self.fd, self.mode = fd, "flock"
            self._write()
            return self
        raise StoreLockedError(f"{self.store}: could not lock {self.path} (it keeps being replaced)")

    def _acquire_excl(self, force_unlock: bool) -> "StoreLock":
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                prev = _read(self.path)
                if prev is None:
                    with contextlib.suppress(OSError):
                        if time.time() - self.path.stat().st_mtime < 10:  # its holder is still writing it
                            self._refuse(None, "alive")
                self._take_over(prev, force_unlock)
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                continue
            self.fd, self.mode = fd, "excl"
            self._write()
            return self
        raise StoreLockedError(f"{self.store}: could not create {self.path} (another driver keeps taking it)")

    def _take_over(self, prev: dict[str, Any] | None, force_unlock: bool) -> None:
        """Decide about the holder named in the file we are about to overwrite."""
        if prev is None or prev.get("pid") == self.info["pid"] and prev.get("host") == self.info["host"]:
            return
        state = holder_state(prev)
        if state == "alive" or (state == "unknown" and not force_unlock):
            self._refuse(prev, state)
        self.stale = prev
        why = "--force-unlock" if state == "unknown" else "that process is gone"
        log.warning("%s: taking over the lock of a driver that did not release it (%s; %s)",
                    self.store, describe(prev), why)
        from .raycluster import kill_recorded

        n = kill_recorded(prev.get("ray")) if state == "dead" else 0
        if n:
            log.warning("%s: stopped %d leftover Ray process(es) of that driver", self.store, n)

    def _refuse(self, h: dict[str, Any] | None, state: str) -> None:
        msg = (f"{self.store} is in use by another {self.what} ({describe(h)}); two drivers in one store "
               "would render samples twice and remove each other's temporary files. Wait for it to end "
               "or stop it, or use another --out.")
        if state == "unknown":
            msg += (f" It runs on another host, so this host cannot tell whether it is still alive; if it "
                    f"is gone, run again with --force-unlock (or remove {self.path}).")
        raise StoreLockedError(msg)

    # ---- holder info
    def _write(self) -> None:
        data = (json.dumps(self.info, sort_keys=True) + "\n").encode()
        assert self.fd is not None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        with contextlib.suppress(OSError):
            os.fsync(self.fd)

    def update(self, **fields: Any) -> None:
        """Add fields to the holder record (e.g. ``ray=...``); best effort."""
        self.info.update(fields)
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self._write()

    # ---- release
    def release(self) -> None:
        """Remove the lock file and unlock (idempotent)."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            cur = _read(self.path)
            if cur is None or (cur.get("pid") == self.info["pid"] and cur.get("host") == self.info["host"]):
                self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self.fd)  # also drops the flock
        self.fd = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def __enter__(self) -> "StoreLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_holder(store: str | os.PathLike, path: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The holder of ``store``'s lock when a writer (e.g. ``synthgen render``) is working in it now,
    else None; for readers (shard, qa) that want to warn about, or refuse, a store in flux. Read-only:
    it never creates, takes or removes the lock. A holder on another host is reported (it cannot be
    checked from here)."""
    from .contract import META_DIR

    path = Path(path) if path is not None else Path(store) / META_DIR / LOCK_FILE
    h = _read(path)
    if not path.exists():
        return None
    if os.environ.get(ENV_MODE, "flock").lower() != "excl":
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return h or {"holder": "unknown"}
        except OSError:
            pass  # no flock here: judge by the record
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    return h if holder_state(h) in ("alive", "unknown") and h else None
