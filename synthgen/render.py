"""``synthgen render``: plan a job, run it on Ray workers, write a sample store; resume, retry, quarantine.

Orchestration:
- The driver validates the config and resolves every asset, then checks the output store against its
  run ledger (``_meta/store.json``: config hash, seed, number of samples) before starting Ray
  (bad input or a different job in the folder -> exit 2).
- Samples already complete (record present, member checksums match, same config hash) are skipped,
  so re-running a command, or ``--resume``, renders only what is missing. Leftover ``.tmp-*`` files
  of killed writers are removed first.
- One long-lived render actor per worker slot (``render.threads_per_worker`` CPUs each) holds a
  warm Blender scene (:class:`synthgen.blender.BlenderRenderer`) and keeps it between samples; it
  re-imports only when the scan changes.
- Work is grouped by scan: an idle actor gets the next sample of the scan it already holds, and
  only switches scans when that scan's queue is empty (then it takes the longest queue).
- Failures: when an actor dies (SIGKILL, out of memory, Blender crash, lost node) the sample it was
  rendering is retried (at most ``render.max_retries`` times) and the slot gets a fresh actor; a
  sample queued behind it is re-queued without penalty. A sample that keeps failing, or fails for a
  reason retrying cannot fix (scan import error, framing), is quarantined in
  ``_meta/quarantine.json`` with its reason. Every planned sample ends either written or
  quarantined; keys are deterministic and writes atomic, so nothing is duplicated.
- Memory: an actor is replaced by a fresh process after ``render.recycle_after_samples`` samples or
  when its RSS exceeds ``render.max_worker_rss_mb``; every worker's peak RSS is reported.
- Workers write samples straight into the output store (a shared filesystem on a cluster) and
  return the small JSON record; arrays never travel through the object store.
- Ctrl-C / SIGTERM: the driver kills its actors, removes ``.tmp-*`` leftovers and exits 130.
- ``ray.init()`` with no address starts an embedded local cluster; ``--address`` joins one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import TMP_PREFIX, write_json_atomic
from .config import RUN_ONLY_KEYS, ConfigError, Job, content_hash, resolve_job
from .contract import META_DIR, member_path, verify_sample
from .sampling import plan, sample_key, scan_for

log = logging.getLogger("synthgen.render")

MAX_IN_FLIGHT = 2
"""Samples given to an actor and not yet written: the next sample renders in Blender (on the actor's
main thread) while the previous one post-processes and writes its files on the actor's writer thread
(EXR encoding, sha256, previews)."""

RECOVERABLE_REASONS = {"worker_died", "exception"}


class GpuClusterError(ConfigError):
    """``render.device: gpu`` but the Ray cluster offers no GPU."""


class StoreMismatchError(ConfigError):
    """The output folder holds samples of a different job (another config hash)."""


# --------------------------------------------------------------------------------------------
# Worker side


def _rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MiB (Linux /proc and getrusage)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    try:
        with open("/proc/self/statm") as fh:
            cur = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        cur = peak
    return cur, peak


class RenderActorImpl:
    """The body of a Ray render actor (also usable in-process, e.g. for benchmarks).

    Args:
        job: ``Job.model_dump(mode="json")``.
        out_dir: output store (must be reachable under this path by the worker).
        previews: also write ``_meta/previews/KEY.png``.
        threads: Cycles threads.
        config_hash: the driver's :func:`synthgen.config.content_hash`, stored in every record.
    """

    def __init__(self, job: dict, out_dir: str, previews: bool, threads: int, config_hash: str | None = None):
        from .blender import BlenderRenderer

        self.job = Job.model_validate(job)
        self.out_dir = out_dir
        self.previews = previews
        self.config_hash = config_hash or content_hash(self.job)
        rs = self.job.config.render
        self.renderer = BlenderRenderer(threads=threads, device=rs.device, gpu_backend=rs.gpu_backend)
        self._bad_scans: dict[str, str] = {}
        # post-processing and writing run here, overlapped with the next render; this thread never calls bpy
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="synthgen-writer")
        self._writes: dict[int, Future] = {}

    def ready(self) -> dict[str, Any]:
        """Identity of the worker process: ``pid``, ``node`` (IP), ``rss_mb``."""
        import socket

        try:
            import ray

            node = ray.util.get_node_ip_address()
        except Exception:
            node = socket.gethostname()
        try:
            import ray

            node_id = ray.get_runtime_context().get_node_id()
        except Exception:
            node_id = None
        return {"pid": os.getpid(), "node": node, "node_id": node_id, "rss_mb": _rss_mb()[0]}

    def render(self, index: int) -> dict[str, Any]:
        """Render sample ``index`` in Blender, then hand its post-processing and writing to the
        writer thread and return at once. Never raises.

        Must be called on the process's main thread (a Ray actor with ``max_concurrency=1``):
        Blender's importers and mode switches fail off it.

        Returns:
            :meth:`collect`'s report without waiting, with ``rendered`` = ``index`` when the write
            was queued (its result comes in a later report), or ``None`` when the sample already
            failed in Blender (its result is then in ``done``).
        """
        from .blender import ScanImportError
        from .worker import FramingError, render_passes

        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("RenderActorImpl.render must run on the process's main thread (Blender "
                               "operators fail elsewhere): create the Ray actor with max_concurrency=1")
        base = self._base(index)
        scan_id = scan_for(self.job, index)
        failed = None
        try:
            if scan_id in self._bad_scans:  # do not re-import a scan that already failed here
                raise ScanImportError(self._bad_scans[scan_id])
            rendered = render_passes(self.renderer, self.job, index)
        except ScanImportError as exc:
            self._bad_scans[scan_id] = str(exc)
            failed = {**base, "status": "error", "reason": "scan_import_failed", "retryable": False,
                      "error": f"ScanImportError: {exc}", "scan_id": scan_id}
        except FramingError as exc:
            failed = {**base, "status": "error", "reason": "framing_failed", "retryable": False,
                      "error": f"FramingError: {exc}", "scan_id": scan_id}
        except Exception as exc:  # unexpected: retried on a fresh worker
            failed = self._unexpected(base, scan_id, exc)
        else:
            self._writes[index] = self._writer.submit(self._finish, base, scan_id, rendered)
        report = self.collect(wait=False)
        if failed is not None:
            report["done"].append(failed)
        report["rendered"] = None if failed is not None else index
        return report

    def collect(self, wait: bool = True) -> dict[str, Any]:
        """Results of the writes finished so far, waiting for at least one if ``wait`` and any is pending.

        Returns:
            ``{"done": [result, ...], "pending": [index, ...], "rss_mb", "peak_rss_mb"}``; a result
            is ``{"index", "key", "pid", "status": "ok" | "error", ...}`` (errors carry ``reason``,
            ``error`` and ``retryable``).
        """
        if wait and self._writes:
            futures_wait(list(self._writes.values()), return_when=FIRST_COMPLETED)
        done = [self._writes.pop(i).result() for i in [i for i, f in self._writes.items() if f.done()]]
        rss, peak = _rss_mb()
        for d in done:
            d["rss_mb"], d["peak_rss_mb"] = rss, peak
        return {"done": done, "pending": list(self._writes), "rss_mb": rss, "peak_rss_mb": peak}

    def _base(self, index: int) -> dict[str, Any]:
        return {"index": index, "key": sample_key(self.job, index), "pid": os.getpid(), "rss_mb": 0.0,
                "peak_rss_mb": 0.0}

    def _unexpected(self, base: dict, scan_id: str, exc: BaseException) -> dict[str, Any]:
        log.exception("sample %s failed", base["key"])
        return {**base, "status": "error", "reason": "exception", "retryable": True,
                "error": f"{type(exc).__name__}: {exc}", "scan_id": scan_id}

    def _finish(self, base: dict, scan_id: str, rendered: dict) -> dict[str, Any]:
        from .contract import ContractError
        from .worker import finish_sample

        try:
            res = finish_sample(rendered, self.out_dir, previews=self.previews, config_hash=self.config_hash)
        except ContractError as exc:
            return {**base, "status": "error", "reason": "contract_error", "retryable": False,
                    "error": f"ContractError: {exc}", "scan_id": scan_id}
        except Exception as exc:
            return self._unexpected(base, scan_id, exc)
        return {**base, "status": "ok", "timings": res["timings"], "resamples": res["resamples"],
                "scan_id": res["record"]["subject_id"]}

    def pid(self) -> int:
        return os.getpid()


# --------------------------------------------------------------------------------------------
# The store's run ledger


def describe_plan(job: Job, indices: list[int]) -> dict[str, Any]:
    groups = plan(job, indices)
    return {
        "num_samples": len(indices),
        "first_key": sample_key(job, indices[0]) if indices else None,
        "samples_per_scan": {k: len(v) for k, v in groups.items()},
        "scans": [{"id": s.id, "path": s.path, "size": s.size.model_dump(exclude_none=True)} for s in job.scans],
        "hdris": [{"id": h.id, "path": h.path} for h in job.hdris],
    }


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": [1, {"c": 2}]}}`` -> ``{"a.b[0]": 1, "a.b[1].c": 2}``."""
    out: dict[str, Any] = {}
    if isinstance(d, dict) and d:
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(d, list) and d and any(isinstance(v, (dict, list)) for v in d):
        for i, v in enumerate(d):
            out.update(_flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = d
    return out


def _config_diff(old: dict, new: dict, limit: int = 6) -> list[str]:
    skip = tuple(RUN_ONLY_KEYS)
    a, b = _flatten(old), _flatten(new)
    diffs = []
    for k in sorted(set(a) | set(b)):
        if k.startswith(skip) and any(k == s or k.startswith(s + ".") for s in skip):
            continue
        va, vb = a.get(k, "<unset>"), b.get(k, "<unset>")
        if va != vb:
            ra, rb = (r if len(r) <= 70 else r[:67] + "..." for r in (repr(va), repr(vb)))
            diffs.append(f"{k}: {ra} -> {rb}")
    return diffs[:limit] + ([f"... and {len(diffs) - limit} more"] if len(diffs) > limit else [])


def read_store_meta(out: Path) -> dict[str, Any] | None:
    """The store's ``_meta/store.json`` or None; raises ConfigError when it is unreadable."""
    p = out / META_DIR / "store.json"
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{p}: unreadable run ledger ({exc}); fix or remove it, or use a new --out") from exc


def check_store(job: Job, out: Path, chash: str, force: bool = False) -> dict[str, Any] | None:
    """Check that ``out`` is empty or holds this job (same :func:`content_hash`).

    Returns the previous ``store.json`` (or None). Raises :class:`StoreMismatchError` naming the
    folder, both hashes and the differing config keys, unless ``force``.
    """
    prev = read_store_meta(out)
    if prev is None:
        if out.is_dir() and any(out.glob("*.json")):
            log.warning("%s holds sample records but no _meta/store.json; only samples with this job's "
                        "config hash count as complete", out)
        return None
    old_hash = prev.get("config_hash")
    if old_hash == chash:
        return prev
    what = (f"{out} already holds another job (_meta/store.json: job {prev.get('config', {}).get('name')!r}, "
            f"seed {prev.get('seed', prev.get('config', {}).get('seed'))}, "
            f"{prev.get('num_samples', prev.get('plan', {}).get('num_samples'))} samples, config hash "
            f"{(old_hash or 'none (written by an older synthgen)')[:12]}, from {prev.get('config_path')}); "
            f"this config hashes to {chash[:12]}")
    diff = _config_diff(prev.get("config", {}), job.config.model_dump(mode="json"))
    if not diff:
        diff = ["(same settings; a scan or HDRI file differs in path or size)"]
    if not force:
        raise StoreMismatchError(
            what + ".\n  differences:\n    " + "\n    ".join(diff) +
            "\n  Use a new --out, or --force to render this job into the folder (its planned samples "
            "are then re-rendered; samples of the old job with other keys stay).")
    log.warning("--force: %s; re-rendering its planned samples", what)
    return prev


def write_store_meta(job: Job, out: Path, chash: str, prev: dict[str, Any] | None) -> dict[str, Any]:
    """Write ``_meta/store.json``: resolved config, config hash, seed, planned sample count, plan.

    The planned count only grows: a run with fewer samples (or ``--indices``) renders a subset of
    the recorded plan.
    """
    cfg = job.config
    n = cfg.num_samples
    history = []
    if prev is not None:
        history = list(prev.get("previous_config_hashes", []))
        if prev.get("config_hash") == chash:
            n = max(n, int(prev.get("num_samples", 0)))
        elif prev.get("config_hash"):
            history.append(prev["config_hash"])
    doc = {
        "kind": "synthgen.store/1", "source": "synthetic", "synthgen_version": __version__,
        "config_hash": chash, "name": cfg.name, "seed": cfg.seed, "num_samples": n,
        "config_path": job.config_path,
        "config": cfg.model_dump(mode="json") | {"num_samples": n},
        "plan": describe_plan(job, list(range(n))),
        "created": (prev.get("created") if prev and prev.get("config_hash") == chash else None) or time.time(),
        "updated": time.time(),
    }
    if history:
        doc["previous_config_hashes"] = history
    write_json_atomic(out / META_DIR / "store.json", doc)
    return doc


def clean_tmp(out: Path) -> int:
    """Remove ``.tmp-*`` leftovers of killed writers from the store, ``_meta`` and previews."""
    n = 0
    for d in (out, out / META_DIR, out / META_DIR / "previews"):
        if d.is_dir():
            for p in d.glob(TMP_PREFIX + "*"):
                with contextlib.suppress(OSError):
                    p.unlink()
                    n += 1
    return n


def sample_complete(out: Path, key: str, chash: str) -> bool:
    """True when ``KEY.json`` exists, every member's sha256 matches it and its ``render.config_hash``
    is ``chash`` (records without a hash, from older versions, are accepted)."""
    if not member_path(out, key, "json").exists():
        return False
    if verify_sample(out, key):
        return False
    try:
        rec = json.loads(member_path(out, key, "json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    h = (rec.get("render") or {}).get("config_hash")
    return h is None or h == chash


def complete_keys(out: Path, keys: list[str], chash: str) -> set[str]:
    """The subset of ``keys`` complete in ``out`` (checksums verified on 8 threads)."""
    with ThreadPoolExecutor(8) as ex:
        flags = list(ex.map(lambda k: sample_complete(out, k, chash), keys))
    return {k for k, f in zip(keys, flags) if f}


class Ledger:
    """Append-only event log ``_meta/ledger.jsonl`` (one JSON object per line, with ``t`` = unix time).

    Events: ``run_start``, ``worker_start``, ``sample_done``, ``sample_retry``, ``sample_quarantined``,
    ``worker_died``, ``worker_recycled``, ``run_end``. It is informative; completeness is always
    decided from the samples themselves.
    """

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")

    def event(self, kind: str, **fields: Any) -> None:
        self._fh.write(json.dumps({"t": round(time.time(), 3), "event": kind, **fields}, sort_keys=True) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _update_quarantine(meta: Path, entries: list[dict], attempted: set[str], complete: set[str]) -> None:
    """Merge this run's quarantined samples into ``_meta/quarantine.json`` (drop entries that are now
    complete or were attempted again in this run); remove the file when nothing stays quarantined."""
    p = meta / "quarantine.json"
    old: list[dict] = []
    if p.exists():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            old = json.loads(p.read_text("utf-8")).get("quarantined", [])
    keep = [e for e in old if e.get("key") not in attempted and e.get("key") not in complete]
    merged = sorted(keep + entries, key=lambda e: e.get("index", 0))
    if merged:
        write_json_atomic(p, {"kind": "synthgen.render_quarantine/1", "quarantined": merged})
    elif p.exists():
        p.unlink()


# --------------------------------------------------------------------------------------------
# Driver


def _next_index(queues: dict[str, deque], current_scan: str | None) -> tuple[str, int] | None:
    if current_scan is not None and queues.get(current_scan):
        return current_scan, queues[current_scan].popleft()
    nonempty = [s for s, q in queues.items() if q]
    if not nonempty:
        return None
    scan = max(nonempty, key=lambda s: len(queues[s]))
    return scan, queues[scan].popleft()


def _short(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


class _Slot:
    """One worker slot: the current actor (replaced on death or recycling) and its bookkeeping."""

    def __init__(self, n: int):
        self.n = n
        self.actor = None
        self.gen = -1
        self.ready = False
        self.retiring = False
        self.given_up = False
        self.start_failures = 0
        self.scan: str | None = None
        self.inflight: list[tuple[Any, int | None]] = []  # calls: (ref, sample index; None = collect)
        self.unwritten: list[int] = []  # rendered on the actor, its write not yet reported
        self.stats: dict[str, Any] = {}


class _Run:
    """State of one render run on Ray (see the module docstring for the policy)."""

    def __init__(self, ray, job: Job, out: Path, todo: list[int], n_workers: int, chash: str,
                 ledger: Ledger, bar):
        cfg = job.config
        self.ray, self.job, self.out, self.ledger, self.bar = ray, job, out, ledger, bar
        self.rs = cfg.render
        # max_concurrency 1: calls run on the actor's main thread, as Blender's operators require;
        # writing overlaps rendering on the actor's own writer thread (see RenderActorImpl.render)
        self.Actor = ray.remote(num_cpus=self.rs.threads_per_worker, num_gpus=1 if self.rs.device == "gpu" else 0,
                                max_restarts=0, max_task_retries=0, max_concurrency=1)(RenderActorImpl)
        self.actor_args = (job.model_dump(mode="json"), str(out), cfg.output.previews,
                           self.rs.threads_per_worker, chash)
        self.queues = {s: deque(v) for s, v in plan(job, todo).items()}
        self.slots = [_Slot(i) for i in range(n_workers)]
        self.pending: dict[Any, tuple[str, _Slot, int | None]] = {}
        self.results: list[dict] = []
        self.quarantined: list[dict] = []
        self.history: dict[int, list[str]] = {}
        self.retried = 0
        self.worker_deaths = 0
        self.recycled = 0
        self.workers: list[dict] = []

    # ---- actors
    def spawn(self, slot: _Slot) -> None:
        if slot.actor is not None:
            with contextlib.suppress(Exception):
                self.ray.kill(slot.actor, no_restart=True)
        slot.gen += 1
        slot.ready = slot.retiring = False
        slot.scan = None
        slot.inflight = []
        slot.unwritten = []
        slot.actor = self.Actor.remote(*self.actor_args)
        slot.stats = {"slot": slot.n, "generation": slot.gen, "pid": None, "node": None, "samples": 0,
                      "rss_start_mb": None, "rss_last_mb": None, "peak_rss_mb": None, "end": None}
        self.workers.append(slot.stats)
        self.pending[slot.actor.ready.remote()] = ("ready", slot, None)

    def on_ready(self, slot: _Slot, ref) -> None:
        try:
            info = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            slot.start_failures += 1
            slot.stats["end"] = f"start failed: {_short(exc)}"
            log.error("worker slot %d: actor failed to start (%s)", slot.n, _short(exc))
            if slot.start_failures > self.rs.max_retries:
                slot.given_up = True
                slot.actor = None
                log.error("worker slot %d: giving up after %d failed starts", slot.n, slot.start_failures)
            else:
                self.spawn(slot)
            return
        slot.ready = True
        slot.start_failures = 0
        slot.stats.update(pid=info["pid"], node=info["node"], rss_start_mb=round(info["rss_mb"], 1))
        slot.stats["node_id"] = info.get("node_id")
        self.ledger.event("worker_start", slot=slot.n, generation=slot.gen, pid=info["pid"], node=info["node"],
                          node_id=info.get("node_id"))

    def retire_now(self, slot: _Slot, why: str) -> None:
        slot.stats["end"] = why
        self.ledger.event("worker_recycled", slot=slot.n, pid=slot.stats["pid"], reason=why,
                          samples=slot.stats["samples"], rss_mb=slot.stats["rss_last_mb"])
        log.info("recycling worker %s (slot %d): %s", slot.stats["pid"], slot.n, why)
        self.recycled += 1
        self.spawn(slot)

    def feed(self, slot: _Slot) -> None:
        if slot.given_up or not slot.ready:
            return
        if slot.retiring:
            if not slot.inflight and not slot.unwritten and any(self.queues.values()):
                self.retire_now(slot, slot.retiring)  # (no new process just to end the run)
                return
        else:
            rc = self.rs.recycle_after_samples
            while True:
                given = sum(i is not None for _, i in slot.inflight) + len(slot.unwritten)
                if given >= MAX_IN_FLIGHT or (rc and slot.stats["samples"] + given >= rc):
                    break
                nxt = _next_index(self.queues, slot.scan)
                if not nxt:
                    break
                slot.scan = nxt[0]
                ref = slot.actor.render.remote(nxt[1])
                slot.inflight.append((ref, nxt[1]))
                self.pending[ref] = ("render", slot, nxt[1])
        if not slot.inflight and slot.unwritten:  # nothing left to render here: wait for the writes
            ref = slot.actor.collect.remote()
            slot.inflight.append((ref, None))
            self.pending[ref] = ("render", slot, None)

    # ---- samples
    def requeue(self, index: int) -> None:
        self.queues.setdefault(scan_for(self.job, index), deque()).appendleft(index)

    def fail(self, index: int, reason: str, error: str, retryable: bool, pid: Any) -> None:
        hist = self.history.setdefault(index, [])
        hist.append(f"{reason}: {error} (worker pid {pid})")
        key = sample_key(self.job, index)
        if retryable and len(hist) <= self.rs.max_retries:
            self.retried += 1
            log.warning("%s: %s: %s; retrying (%d/%d)", key, reason, error, len(hist), self.rs.max_retries)
            self.ledger.event("sample_retry", key=key, index=index, reason=reason, error=error, pid=pid)
            self.requeue(index)
            return
        entry = {"key": key, "index": index, "scan_id": scan_for(self.job, index), "reason": reason,
                 "error": error, "attempts": len(hist), "history": hist}
        self.quarantined.append(entry)
        log.error("%s quarantined after %d attempt(s): %s", key, len(hist), error)
        self.ledger.event("sample_quarantined", key=key, index=index, reason=reason, error=error)
        self.bar.update(1)

    def on_result(self, slot: _Slot, index: int, res: dict) -> None:
        st = slot.stats
        st["rss_last_mb"] = round(res["rss_mb"], 1)
        st["peak_rss_mb"] = round(max(st["peak_rss_mb"] or 0.0, res["peak_rss_mb"]), 1)
        if res["status"] == "ok":
            st["samples"] += 1
            self.results.append(res)
            self.ledger.event("sample_done", key=res["key"], index=index, pid=res["pid"],
                              render_s=round(res["timings"]["render_s"], 3), rss_mb=st["rss_last_mb"])
            self.bar.update(1)
        else:
            self.fail(index, res["reason"], res["error"], res["retryable"], res["pid"])
            if res["retryable"] and not slot.retiring:
                slot.retiring = "fresh process after an unexpected error"
        rc = self.rs.recycle_after_samples
        if not slot.retiring and rc and st["samples"] >= rc:
            slot.retiring = f"{st['samples']} samples (render.recycle_after_samples)"
        lim = self.rs.max_worker_rss_mb
        if not slot.retiring and lim and res["rss_mb"] > lim:
            slot.retiring = f"RSS {res['rss_mb']:.0f} MiB > {lim:g} MiB (render.max_worker_rss_mb)"

    def on_render(self, slot: _Slot, ref, index: int | None) -> None:
        try:
            report = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            self.on_actor_died(slot, exc)
            return
        slot.inflight.remove((ref, index))
        self.on_report(slot, report)

    def on_report(self, slot: _Slot, report: dict) -> None:
        """Settle a render/collect call's report: the samples it finished, and the one it queued for writing."""
        if report.get("rendered") is not None:
            slot.unwritten.append(report["rendered"])
        for res in report["done"]:
            with contextlib.suppress(ValueError):
                slot.unwritten.remove(res["index"])
            self.on_result(slot, res["index"], res)

    def on_actor_died(self, slot: _Slot, exc: BaseException) -> None:
        """Settle every call of a dead actor: finished ones count, the first unfinished one (the
        sample it was rendering) is retried or quarantined, the rest are re-queued."""
        ray = self.ray
        calls = list(slot.inflight)
        refs = [r for r, _ in calls]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0) if refs else ([], [])
        why = _short(exc)
        pid = slot.stats.get("pid")
        self.worker_deaths += 1
        slot.stats["end"] = f"died: {why}"
        log.error("worker %s (slot %d, node %s) died: %s", pid, slot.n, slot.stats.get("node"), why)
        self.ledger.event("worker_died", slot=slot.n, pid=pid, node=slot.stats.get("node"), error=why)
        lost = []  # samples of this actor with no result, in the order they reached it
        for r, index in calls:
            self.pending.pop(r, None)
            report = None
            if r in ready:
                with contextlib.suppress(ray.exceptions.RayError):
                    report = ray.get(r)
            if report is not None:
                self.on_report(slot, report)
            elif index is not None:
                lost.append(index)
        # the sample in Blender when the process died (else the one being written) is to blame
        # and retried or quarantined; the others are re-queued without penalty
        lost = slot.unwritten + lost
        culprit = lost[len(slot.unwritten)] if len(lost) > len(slot.unwritten) else (lost[0] if lost else None)
        for index in lost:
            if index == culprit:
                self.fail(index, "worker_died", f"worker process died while rendering ({why})", True, pid)
            else:
                self.requeue(index)
        slot.inflight = []
        slot.unwritten = []
        self.spawn(slot)

    # ---- loop
    def work_left(self) -> bool:
        return any(self.queues.values()) or any(s.inflight or s.unwritten for s in self.slots)

    def run(self) -> None:
        for s in self.slots:
            self.spawn(s)
        waited = 0.0
        while self.work_left():
            if all(s.given_up for s in self.slots):
                for q in self.queues.values():
                    while q:
                        i = q.popleft()
                        self.history.setdefault(i, [])
                        self.fail(i, "worker_start_failed", "no render worker could be started", False, None)
                break
            if not self.pending:  # cannot happen while a slot lives; never wait on nothing
                log.error("no render worker left; %d sample(s) not rendered",
                          sum(len(q) for q in self.queues.values()))
                break
            done, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=1.0)
            if _STOP.is_set():
                raise KeyboardInterrupt
            if not done:
                waited += 1.0
                if not any(s.ready for s in self.slots) and waited % 30 == 0:
                    log.warning("no render worker is running for %.0f s (waiting for cluster resources: "
                                "%d CPU(s) per worker)", waited, self.rs.threads_per_worker)
                continue
            waited = 0.0
            kind, slot, index = self.pending.pop(done[0])
            if kind == "ready":
                self.on_ready(slot, done[0])
            else:
                self.on_render(slot, done[0], index)
            for s in self.slots:
                self.feed(s)

    def shutdown(self, why: str = "finished") -> None:
        for s in self.slots:
            if s.actor is not None:
                with contextlib.suppress(Exception):
                    self.ray.kill(s.actor, no_restart=True)
                if s.stats.get("end") is None:
                    s.stats["end"] = why


_STOP = threading.Event()
"""Set by SIGINT / SIGTERM during a run; the scheduling loop checks it after every wait, so an
interrupt that arrives while Ray's C++ code holds the main thread (and that Ray might swallow)
still stops the run."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Treat SIGTERM (cluster pre-emption, ``kill``) like Ctrl-C while the run is in progress; both
    also set :data:`_STOP`."""
    def handler(signum, frame):
        _STOP.set()
        raise KeyboardInterrupt
    _STOP.clear()
    try:
        old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def run_render(job: Job, out_dir: str | os.PathLike, indices: list[int] | None = None,
               workers: int | None = None, address: str | None = None,
               progress: bool = True, force: bool = False, rerender: bool = False) -> dict[str, Any]:
    """Render ``indices`` (default: all samples of the job) into ``out_dir`` on Ray.

    Samples already complete in ``out_dir`` (see :func:`sample_complete`) are skipped unless
    ``rerender``. Raises :class:`StoreMismatchError` (before Ray starts) when ``out_dir`` holds
    another job and not ``force``. A KeyboardInterrupt (Ctrl-C, SIGTERM) stops the run cleanly and
    is reported as ``interrupted`` in the summary instead of propagating.

    Returns:
        Summary dict: ``written``, ``skipped`` (already complete), ``retried`` (re-submissions after
        failures), ``failed`` (quarantined entries: key, index, scan_id, reason, error, attempts),
        ``worker_deaths``, ``recycled``, ``workers`` (slots), ``worker_stats`` (per worker process:
        pid, node, samples, RSS at start / last / peak in MiB, how it ended), ``peak_worker_rss_mb``,
        ``interrupted``, ``wall_s``, ``samples_per_min``, summed ``timings`` (setup_s, render_s,
        write_s), ``resamples`` and ``threads_per_worker``.
    """
    cfg = job.config
    out = Path(out_dir).resolve()
    indices = list(range(cfg.num_samples)) if indices is None else sorted(set(indices))
    chash = content_hash(job)
    prev = check_store(job, out, chash, force=force)
    meta = out / META_DIR
    meta.mkdir(parents=True, exist_ok=True)
    write_store_meta(job, out, chash, prev)
    n_tmp = clean_tmp(out)
    if n_tmp:
        log.info("removed %d leftover .tmp-* file(s) of an earlier, interrupted run", n_tmp)
    keys = {i: sample_key(job, i) for i in indices}
    done_before = set() if rerender else complete_keys(out, list(keys.values()), chash)
    todo = [i for i in indices if keys[i] not in done_before]
    threads = cfg.render.threads_per_worker
    summary: dict[str, Any] = {
        "written": 0, "skipped": len(done_before), "retried": 0, "failed": [], "worker_deaths": 0,
        "recycled": 0, "workers": 0, "threads_per_worker": threads, "worker_stats": [],
        "peak_worker_rss_mb": None, "interrupted": False, "wall_s": 0.0, "samples_per_min": 0.0,
        "timings": {"setup_s": 0.0, "render_s": 0.0, "write_s": 0.0}, "resamples": 0,
    }
    if done_before:
        log.info("%d of %d sample(s) already complete in %s; rendering the other %d",
                 len(done_before), len(indices), out, len(todo))
    ledger = Ledger(meta / "ledger.jsonl")
    ledger.event("run_start", config_hash=chash, samples=len(indices), todo=len(todo),
                 skipped=len(done_before), pid=os.getpid())
    if not todo:
        ledger.event("run_end", **{k: summary[k] for k in ("written", "skipped", "retried")}, failed=0)
        ledger.close()
        write_json_atomic(meta / "run.json", {**summary, "status": "complete", "config_hash": chash,
                                              "finished": time.time()})
        _update_quarantine(meta, [], set(keys.values()), set(keys.values()))
        return summary

    import ray
    from tqdm import tqdm

    started_ray = False
    run: _Run | None = None
    bar = None
    t0 = time.perf_counter()
    try:
        try:
            if not ray.is_initialized():
                kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
                ray.init(address=address, **kwargs) if address else ray.init(**kwargs)
                started_ray = True
            with _sigterm_as_interrupt():  # after ray.init, which installs its own SIGTERM handler
                n_cpu = int(ray.cluster_resources().get("CPU", 1))
                n_workers = workers or cfg.workers or max(1, n_cpu // threads)
                if cfg.render.device == "gpu":  # one worker per GPU
                    n_gpu = int(ray.cluster_resources().get("GPU", 0))
                    if n_gpu < 1:
                        raise GpuClusterError(
                            f"render.device: gpu, but the Ray cluster{' at ' + address if address else ''} "
                            "has no GPUs (ray.cluster_resources() lists none); use render.device: cpu "
                            "or start Ray on GPU nodes")
                    n_workers = min(workers or cfg.workers or n_gpu, n_gpu)
                n_workers = max(1, min(n_workers, len(todo)))
                bar = tqdm(total=len(todo), desc="render", unit="sample", disable=not progress, file=sys.stderr)
                run = _Run(ray, job, out, todo, n_workers, chash, ledger, bar)
                log.info("rendering %d samples (%s) with %d worker(s) x %d thread(s) into %s",
                         len(todo), ", ".join(f"{s}: {len(v)}" for s, v in run.queues.items()),
                         n_workers, threads, out)
                t0 = time.perf_counter()
                run.run()
        except GpuClusterError:
            # refused before any work: leave the folder as it was, so a CPU run is not then refused
            # as "another job" (nothing of this run exists yet)
            ledger.close()
            if prev is None:
                for f in ("store.json", "ledger.jsonl"):
                    with contextlib.suppress(FileNotFoundError):
                        (meta / f).unlink()
                with contextlib.suppress(OSError):
                    meta.rmdir()
                    out.rmdir()
            else:
                write_json_atomic(meta / "store.json", prev)
            raise
        except KeyboardInterrupt:
            summary["interrupted"] = True
            log.warning("interrupted: stopping the workers; complete samples stay, the rest render "
                        "on the next run with the same command (or --resume)")
    finally:
        with contextlib.suppress(BaseException):
            if bar is not None:
                bar.close()
            if run is not None:
                run.shutdown("interrupted" if summary["interrupted"] else "finished")
            if started_ray:
                ray.shutdown()
            elif summary["interrupted"]:
                time.sleep(1.0)  # let killed actors of an external cluster stop writing
            clean_tmp(out)
    wall = time.perf_counter() - t0
    results = run.results if run else []
    quarantined = run.quarantined if run else []
    stats = run.workers if run else []
    timings = {k: sum(r["timings"][k] for r in results) for k in ("setup_s", "render_s", "write_s")}
    peaks = [w["peak_rss_mb"] for w in stats if w.get("peak_rss_mb")]
    summary.update(
        written=len(results), failed=quarantined, wall_s=wall, workers=len(run.slots) if run else 0,
        retried=run.retried if run else 0, worker_deaths=run.worker_deaths if run else 0,
        recycled=run.recycled if run else 0, worker_stats=stats, peak_worker_rss_mb=max(peaks) if peaks else None,
        samples_per_min=60.0 * len(results) / wall if wall > 0 else 0.0, timings=timings,
        resamples=sum(r["resamples"] for r in results))
    attempted = {sample_key(job, i) for i in todo}
    written = {r["key"] for r in results}
    _update_quarantine(meta, quarantined, attempted if not summary["interrupted"] else
                       written | {e["key"] for e in quarantined}, done_before | written)
    status = "interrupted" if summary["interrupted"] else ("failures" if quarantined else "complete")
    write_json_atomic(meta / "run.json", {**summary, "status": status, "config_hash": chash,
                                          "finished": time.time()})
    ledger.event("run_end", status=status, written=len(results), skipped=len(done_before),
                 retried=summary["retried"], failed=len(quarantined), worker_deaths=summary["worker_deaths"],
                 recycled=summary["recycled"], workers=[{k: w.get(k) for k in ("pid", "samples", "peak_rss_mb", "end")}
                                                         for w in stats])
    ledger.close()
    return summary


# --------------------------------------------------------------------------------------------
# CLI


def _parse_indices(s: str) -> list[int]:
    out: list[int] = []
    for part in s.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def _parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``--set a.b=VALUE`` (VALUE parsed with ``yaml.safe_load``) -> ``{"a.b": value}``."""
    import yaml

    out: dict[str, Any] = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", k.strip()):
            raise ConfigError(f"--set {it!r}: expected KEY=VALUE with a dotted key, e.g. render.samples=1024")
        try:
            out[k.strip()] = yaml.safe_load(v)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {it!r}: value is not valid YAML ({exc})") from None
    return out


def _parse_only(s: str) -> list[tuple[str, int, int]]:
    """``--only K1,K2`` -> [(job name, seed, index)]; keys are ``{name}_s{seed}_{index:06d}``."""
    out = []
    for key in (k.strip() for k in s.split(",")):
        if not key:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_-]+)_s(\d+)_(\d+)", key)
        if not m:
            raise ConfigError(f"--only: {key!r} is not a rendered sample key like portrait_s0_000042")
        out.append((m.group(1), int(m.group(2)), int(m.group(3))))
    if not out:
        raise ConfigError("--only: no key given")
    return out


def _load_job(args: argparse.Namespace, out_dir: str | None) -> tuple[Job, list[int] | None, bool]:
    """Resolve the job, the indices and whether to re-render complete samples from the CLI args."""
    overrides = _parse_sets(args.set)
    only = _parse_only(args.only) if args.only else None
    if only:
        if args.indices:
            raise ConfigError("--only and --indices cannot be combined")
        seeds = {s for _, s, _ in only}
        if len(seeds) > 1:
            raise ConfigError(f"--only: keys of different seeds {sorted(seeds)}; re-render one seed at a time")
        seed = seeds.pop()
        if args.seed is not None and args.seed != seed:
            raise ConfigError(f"--only: key seed {seed} disagrees with --seed {args.seed}")
        overrides["seed"] = seed
    if args.num_samples is not None:
        overrides["num_samples"] = args.num_samples
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.config:
        job = resolve_job(args.config, overrides)
    else:  # --resume without --config: the config recorded in the store
        if not out_dir:
            raise ConfigError("--resume without --config needs --out (the store to resume)")
        prev = read_store_meta(Path(out_dir).resolve())
        if prev is None:
            raise ConfigError(f"{Path(out_dir).resolve()}: nothing to resume (no _meta/store.json); pass --config")
        data = dict(prev["config"])
        job = resolve_job(prev["config_path"], overrides, data=data)
    if args.resume and args.config and out_dir and read_store_meta(Path(out_dir).resolve()) is None:
        raise ConfigError(f"--resume: {Path(out_dir).resolve()} has no _meta/store.json (nothing to resume)")
    n = job.config.num_samples
    indices = None
    if only:
        names = {nm for nm, _, _ in only}
        if names != {job.config.name}:
            raise ConfigError(f"--only: key job name(s) {sorted(names)} differ from the config's name {job.config.name!r}")
        indices = [i for _, _, i in only]
    elif args.indices:
        try:
            indices = _parse_indices(args.indices)
        except ValueError:
            raise ConfigError(f"--indices: {args.indices!r} is not a list like 0,3,5-9") from None
    if indices is not None:
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise ConfigError(f"{'--only' if only else '--indices'}: sample index {bad} outside [0, {n}) "
                              "(num_samples; raise it with --num-samples)")
    return job, indices, bool(only)


def cmd_render(args: argparse.Namespace) -> int:
    if not args.config and not args.resume:
        print("synthgen render: error: give --config (or --resume --out DIR to continue a store's job)",
              file=sys.stderr)
        return 2
    out_arg = args.out
    try:
        job, indices, rerender = _load_job(args, out_arg)
    except ConfigError as exc:
        print(f"synthgen render: error: {exc}", file=sys.stderr)
        return 2
    out_dir = out_arg or job.config.output.dir
    if args.dry_run:
        todo = indices if indices is not None else list(range(job.config.num_samples))
        import yaml

        pl = describe_plan(job, todo)
        print(yaml.safe_dump({"config": job.config.model_dump(mode="json", exclude_none=True),
                              "out": str(Path(out_dir).resolve()), "config_hash": content_hash(job),
                              "plan": pl}, sort_keys=False), end="")
        print(f"# dry run: {pl['num_samples']} samples over {len(pl['samples_per_scan'])} scan(s) "
              f"{pl['samples_per_scan']} and {len(pl['hdris'])} HDRI(s); nothing rendered")
        return 0
    try:
        summary = run_render(job, out_dir, indices=indices, workers=args.workers, address=args.address,
                             progress=not args.no_progress, force=args.force, rerender=rerender)
    except ConfigError as exc:
        print(f"synthgen render: error: {exc}", file=sys.stderr)
        return 2
    t = summary["timings"]
    out = Path(out_dir).resolve()
    peak = summary["peak_worker_rss_mb"]
    failed = summary["failed"]
    print(f"synthgen render: wrote {summary['written']} samples to {out} in "
          f"{summary['wall_s']:.1f} s ({summary['samples_per_min']:.1f} samples/min; "
          f"{summary['workers']} worker(s); Cycles {t['render_s']:.1f} s, setup {t['setup_s']:.1f} s, "
          f"write {t['write_s']:.1f} s summed over workers; {summary['resamples']} re-sample(s)); "
          f"{summary['skipped']} already complete (skipped), {summary['retried']} retried, "
          f"{len(failed)} failed; {summary['worker_deaths']} worker death(s), {summary['recycled']} recycled; "
          f"peak worker RSS {f'{peak:.0f} MiB' if peak else 'n/a'}")
    if failed:
        print(f"synthgen render: {len(failed)} sample(s) quarantined in {out / META_DIR / 'quarantine.json'}:",
              file=sys.stderr)
        for e in failed[:10]:
            print(f"  {e['key']}: {e['reason']}: {e['error']}", file=sys.stderr)
    if summary["interrupted"]:
        print("synthgen render: interrupted; run the same command again (or add --resume) to render the rest",
              file=sys.stderr)
        return 130
    return 1 if failed else 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "render", help="render synthetic samples with Blender on Ray",
        description="Render a job: each sample is KEY.rgb.exr, KEY.depth.exr, KEY.mask.exr and KEY.json "
                    "(see docs/sample_format.md). Runs on an embedded local Ray cluster unless --address is given. "
                    "Re-running into the same --out renders only samples that are missing or incomplete; a "
                    "different config into it is refused (exit 2) unless --force. Workers that die are replaced "
                    "and their samples retried (render.max_retries); samples that keep failing are quarantined in "
                    "OUT/_meta/quarantine.json (exit 1).",
        epilog="examples:\n  synthgen render --config configs/portrait.yaml\n"
               "  synthgen render --config configs/smoke.yaml --out /tmp/smoke --num-samples 2\n"
               "  synthgen render --resume --out /tmp/smoke        # continue with the config recorded there\n"
               "  synthgen render --config configs/portrait.yaml --dry-run\n"
               "  synthgen render --config configs/portrait.yaml --only portrait_s0_000042 \\\n"
               "      --set render.samples=1024 --out /tmp/ref        # re-render one sample, more samples\n"
               "  synthgen render --config configs/portrait.yaml --address auto   # inside a Ray cluster",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="job YAML (e.g. configs/portrait.yaml); optional with --resume")
    p.add_argument("--out", help="output store folder (default: output.dir of the config, relative to the current directory)")
    p.add_argument("--num-samples", type=int, help="override num_samples (may grow between runs into one store)")
    p.add_argument("--seed", type=int, help="override the global seed")
    p.add_argument("--workers", type=int, help="number of Blender workers (default: CPUs / render.threads_per_worker)")
    p.add_argument("--address", help="Ray cluster address to join (e.g. auto or ray://host:10001); default: start a local one")
    p.add_argument("--indices", help="render only these sample indices, e.g. 0,3,5-9 (same parameters as in a full run)")
    p.add_argument("--only", metavar="KEY[,KEY...]",
                   help="re-render these samples (even if complete) with their exact parameters, e.g. "
                        "portrait_s0_000042; combine with --set to change settings and --out for a new folder")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key (dotted path; VALUE is YAML), e.g. --set render.samples=1024; repeatable")
    p.add_argument("--resume", action="store_true",
                   help="continue the job recorded in --out (the config in _meta/store.json unless --config is given); "
                        "renders only missing samples, as a plain re-run does")
    p.add_argument("--force", action="store_true",
                   help="render into a folder that holds another job (its planned samples are re-rendered)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and the plan, render nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_render)
