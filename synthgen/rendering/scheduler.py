"""Scheduling samples onto Ray render actors: grouping by scan, retries, worker deaths, recycling.

See :mod:`synthgen.rendering.driver` for the policy.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


from ..errors import RunStopped
from .actor import RenderActorImpl
from .config import Job
from .ledger import Ledger
from .workqueue import WINDOW, WorkQueue
from .sampling import sample_key, scan_for

log = logging.getLogger("synthgen.render")

MAX_IN_FLIGHT = 2
"""Samples given to an actor and not yet written: the next sample renders in Blender (on the actor's
main thread) while the previous one post-processes and writes its files on the actor's writer thread
(EXR encoding, sha256, previews)."""

RECOVERABLE_REASONS = {"worker_died", "exception"}

NO_WORKER_LOG_S = 30.0


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


class Scheduler:
    """State of one render run on Ray (see the module docstring for the policy)."""

    def __init__(self, ray, job: Job, out: Path, todo: Iterable, n_workers: int, chash: str,
                 ledger: Ledger, bar, health: Callable[[], str | None] | None = None, window: int = WINDOW):
        """``todo``: sample indices (a list, or an iterator of ascending index arrays, pulled lazily);
        ``health``: called about once a second, returns why the cluster cannot run work any more
        (the run then stops with ``cluster_lost``) or None."""
        cfg = job.config
        self.ray, self.job, self.out, self.ledger, self.bar = ray, job, out, ledger, bar
        self.rs = cfg.render
        # max_concurrency 1: calls run on the actor's main thread, as Blender's operators require;
        # writing overlaps rendering on the actor's own writer thread (see RenderActorImpl.render)
        self.Actor = ray.remote(num_cpus=self.rs.threads_per_worker, num_gpus=1 if self.rs.device == "gpu" else 0,
                                max_restarts=0, max_task_retries=0, max_concurrency=1)(RenderActorImpl)
        self.actor_args = (job.model_dump(mode="json"), str(out), cfg.output.previews,
                           self.rs.threads_per_worker, chash)
        self.work = WorkQueue(job, todo, window)
        self.slots = [_Slot(i) for i in range(n_workers)]
        self.pending: dict[Any, tuple[str, _Slot, int | None]] = {}
        self.health = health
        self.written = 0
        self.timings = {"setup_s": 0.0, "render_s": 0.0, "write_s": 0.0}
        self.resamples = 0
        self.preview_errors = 0
        self.stopped: RunStopped | None = None
        self.quarantined: list[dict] = []
        self.history: dict[int, list[str]] = {}
        self.retried = 0
        self.worker_deaths = 0
        self.recycled = 0
        self.workers: list[dict] = []

    # ---- work queues (see WorkQueue)
    @property
    def queues(self) -> dict[str, deque]:
        return self.work.queues

    @property
    def queued(self) -> int:
        return self.work.queued

    def next_index(self, current: str | None) -> tuple[str, int] | None:
        return self.work.next_index(current)

    def has_queued(self) -> bool:
        return self.work.has_queued()

    def stop(self, reason: str, message: str) -> None:
        """Give out no more work (samples in flight still settle); the run ends as ``reason``."""
        if self.stopped is None:
            self.stopped = RunStopped(reason, message)
            log.error("stopping the run (%s): %s", reason, message)
            self.ledger.event("run_stopping", reason=reason, error=message)
        self.work.clear()

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
            if not slot.inflight and not slot.unwritten and self.has_queued():
                self.retire_now(slot, slot.retiring)  # (no new process just to end the run)
                return
        else:
            rc = self.rs.recycle_after_samples
            while True:
                given = sum(i is not None for _, i in slot.inflight) + len(slot.unwritten)
                if given >= MAX_IN_FLIGHT or (rc and slot.stats["samples"] + given >= rc):
                    break
                nxt = self.next_index(slot.scan)
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
        if self.stopped is not None:
            return  # not rendered in this run
        self.work.push_front(scan_for(self.job, index), index)

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
            self.written += 1
            for k in self.timings:
                self.timings[k] += float(res["timings"].get(k, 0.0))
            self.resamples += int(res.get("resamples", 0))
            extra = {}
            if res.get("preview_error"):
                self.preview_errors += 1
                extra["preview_error"] = res["preview_error"]
            self.ledger.event("sample_done", key=res["key"], index=index, pid=res["pid"],
                              render_s=round(res["timings"].get("render_s", 0.0), 3), rss_mb=st["rss_last_mb"], **extra)
            self.bar.update(1)
        else:
            self.fail(index, res["reason"], res["error"], res["retryable"], res["pid"])
            if res.get("stop"):
                self.stop(res["reason"], f"{res['key']}: {res['error']}")
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
        return self.has_queued() or any(s.inflight or s.unwritten for s in self.slots)

    def _give_up_unstartable(self) -> None:
        """Every slot failed to start an actor: quarantine the queued samples (the rest of a larger
        job is left for a later run) and stop."""
        for i in self.work.drain():
            self.history.setdefault(i, [])
            self.fail(i, "worker_start_failed", "no render worker could be started", False, None)
        self.stop("no_workers", "no render worker could be started (see the errors above)")

    def _check_waits(self, no_worker_since: float | None, last_log: float) -> float:
        """Stop when the cluster is lost, or no worker ran for ``render.max_wait_for_workers_s``; log progress."""
        if self.health is not None:
            why = self.health()
            if why:
                raise RunStopped("cluster_lost", why)
        if no_worker_since is None:
            return last_log
        waited = time.monotonic() - no_worker_since
        limit = self.rs.max_wait_for_workers_s
        if limit is not None and waited > limit:
            raise RunStopped("no_workers", f"no render worker has run for {waited:.0f} s "
                             f"(render.max_wait_for_workers_s: {limit:g}); the cluster has no room for a "
                             f"worker ({self.rs.threads_per_worker} CPU(s){' + 1 GPU' if self.rs.device == 'gpu' else ''} each)")
        every = NO_WORKER_LOG_S if limit is None else min(NO_WORKER_LOG_S, max(1.0, limit / 3))
        if waited - last_log >= every:
            last_log = waited
            log.warning("no render worker is running for %.0f s (waiting for cluster resources: %d CPU(s) per "
                        "worker%s; giving up after %s)", waited, self.rs.threads_per_worker,
                        ", 1 GPU" if self.rs.device == "gpu" else "",
                        f"{limit:g} s (render.max_wait_for_workers_s)" if limit else "never: render.max_wait_for_workers_s is null")
        return last_log

    def run(self) -> None:
        """Schedule until every sample is settled, or the run stops (:attr:`stopped`; raises
        :class:`RunStopped` for a lost cluster or too long without a worker)."""
        for s in self.slots:
            self.spawn(s)
        no_worker_since: float | None = time.monotonic()
        last_log, last_check = 0.0, 0.0
        while self.work_left():
            if all(s.given_up for s in self.slots):
                self._give_up_unstartable()
                break
            if not self.pending:  # cannot happen while a slot lives; never wait on nothing
                log.error("no render worker left; %d sample(s) not rendered", self.queued)
                self.stop("no_workers", "no render worker left")
                break
            done, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=1.0)
            if STOP.is_set():
                raise KeyboardInterrupt
            now = time.monotonic()
            if any(s.ready for s in self.slots):
                no_worker_since, last_log = None, 0.0
            elif no_worker_since is None:
                no_worker_since = now
            if now - last_check >= 1.0 or not done:
                last_check = now
                last_log = self._check_waits(no_worker_since, last_log)
            if not done:
                continue
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


STOP = threading.Event()
"""Set by SIGINT / SIGTERM during a run; the scheduling loop checks it after every wait, so an
interrupt that arrives while Ray's C++ code holds the main thread (and that Ray might swallow)
still stops the run."""
