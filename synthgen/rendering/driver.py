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
- Memory: an actor is recycled after ``render.recycle_after_samples`` samples or above
  ``render.max_worker_rss_mb``; every worker's peak RSS is reported.
- Workers write samples straight into the store and return the small JSON record.
- Ctrl-C / SIGTERM: the driver kills its actors, removes ``.tmp-*`` leftovers and exits 130.
- Without ``--address`` (and ``RAY_ADDRESS``) an embedded local cluster starts, never a leftover
  local one; ``--address`` joins a cluster (:func:`synthgen.raycluster.init_ray`).

Hardening (docs/robustness.md):
- One driver per store: an exclusive lock on ``_meta/lock`` (:mod:`synthgen.storelock`) from before
  the first write to after the summary; a second driver is refused (exit 2) naming the holder.
- Preflight before anything is written: ``--out`` usable, every HDRI decoded
  (:mod:`.hdri_check`), every scan imported (:mod:`.scan_check`), disk space (exit 2 unless ``--force``).
- A storage error (disk full, I/O error) on a sample stops giving out work; a lost embedded cluster
  or no worker for ``render.max_wait_for_workers_s`` ends the run. The summary, ``run_end`` and the
  quarantine are still written (printed when even that fails).
- Planning is lazy (index ranges, vectorised windows): memory does not grow with ``num_samples``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..atomic import write_json_atomic
from ..contract import META_DIR
from ..errors import ConfigError, GpuClusterError, RunStopped, StoreMismatchError  # noqa: F401 (re-exported)
from ..raycluster import EmbeddedCluster, check_address, is_embedded, start_ray
from ..store import clean_tmp
from ..storelock import StoreLock
from .config import Job, content_hash
from .hdri_check import check_hdris
from .scan_check import check_scans, scan_summary, write_scan_report
from .ledger import Ledger, check_store, write_store_meta
from .planning import IndexSet, count_done, todo_chunks
from .preflight import check_out, check_space, complete_indices
from .scheduler import STOP, Scheduler
from .summary import finish_run, new_summary

log = logging.getLogger("synthgen.render")

# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Treat SIGTERM (cluster pre-emption, ``kill``) like Ctrl-C while the run is in progress; both
    also set :data:`STOP`."""
    def handler(signum, frame):
        STOP.set()
        raise KeyboardInterrupt
    STOP.clear()
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


def run_render(job: Job, out_dir: str | os.PathLike, indices: Iterable[int] | None = None,
               workers: int | None = None, address: str | None = None,
               progress: bool = True, force: bool = False, rerender: bool = False,
               force_unlock: bool = False, skip_bad_scans: bool = False, scan_check: bool = True) -> dict[str, Any]:
    """Render ``indices`` (default: all samples of the job; a list or an
    :class:`~synthgen.rendering.planning.IndexSet`) into ``out_dir`` on Ray.

    Samples already complete in ``out_dir`` (see :func:`synthgen.store.sample_complete`) are skipped
    unless ``rerender``. Without ``address`` (and ``RAY_ADDRESS``) an embedded local Ray cluster is
    started (:func:`synthgen.raycluster.start_ray`). A KeyboardInterrupt (Ctrl-C, SIGTERM) stops the
    run cleanly and is reported as ``interrupted`` in the summary instead of propagating.

    Returns:
        Summary dict: ``written``, ``skipped`` (already complete), ``retried`` (re-submissions after
        failures), ``failed`` (quarantined entries: key, index, scan_id, reason, error, attempts),
        ``worker_deaths``, ``recycled``, ``workers`` (slots), ``worker_stats`` (per worker process:
        pid, node, samples, RSS at start / last / peak in MiB, how it ended), ``peak_worker_rss_mb``,
        ``interrupted``, ``stopped`` (None, or ``{"reason": "io_error" | "cluster_lost" |
        "no_workers", "message"}`` when the run ended early), ``not_rendered`` (planned samples
        neither written nor quarantined), ``preview_errors``, ``wall_s``, ``samples_per_min``, summed
        ``timings`` (setup_s, render_s, write_s), ``resamples``, ``threads_per_worker`` and
        ``unsaved`` (run files that could not be written, e.g. on a full disk; their content is
        printed to stderr).

    Raises:
        ConfigError: unusable ``out_dir``, a corrupt HDRI, a scan failing the preflight (unless
            ``skip_bad_scans``: then it is left out, its reason in ``_meta/scans.json`` and the
            summary's ``scans_quarantined``), not enough disk space (unless ``force``), the store
            is locked by another driver (:class:`StoreLockedError`). ``scan_check=False`` skips the
            scan preflight: a bad scan then fails its samples on the workers (quarantined, exit 1).
        StoreMismatchError: ``out_dir`` holds another job and not ``force`` (before Ray starts).
        GpuClusterError: ``render.device: gpu`` on a cluster without GPUs (the folder is left as it was).
    """
    cfg = job.config
    out = Path(out_dir).resolve()
    idx = (IndexSet.full(cfg.num_samples) if indices is None else
           indices if isinstance(indices, IndexSet) else IndexSet.of(indices))
    check_out(out)
    check_hdris(job)
    job, scans = check_scans(job, skip_bad=skip_bad_scans) if scan_check else (job, None)  # cached
    try:
        check_address(address)
    except ConnectionError as exc:
        raise ConfigError(f"--address: {exc}") from None
    chash = content_hash(job)
    if not force:
        check_store(job, out, chash)  # another job: refused before anything is touched
    meta = out / META_DIR
    created = [d for d in (out, meta) if not d.exists()]
    lock = StoreLock(out)
    try:
        lock.acquire(force_unlock=force_unlock)
    except OSError as exc:
        _remove_created(created)
        raise ConfigError(f"--out {out}: cannot create the store's lock ({exc.strerror or exc})") from None
    except BaseException:
        _remove_created(created)
        raise
    if lock.stale:
        print(f"synthgen render: took over the lock of a driver that is gone (pid {lock.stale.get('pid')} on "
              f"{lock.stale.get('host')})", file=sys.stderr)
    try:
        return _run_locked(job, out, idx, chash, workers, address, progress, force, rerender, lock, created, scans)
    finally:
        lock.release()


def _remove_created(created: list[Path]) -> None:
    for d in reversed(created):
        with contextlib.suppress(OSError):
            d.rmdir()


def _run_locked(job: Job, out: Path, idx: IndexSet, chash: str, workers: int | None, address: str | None,
                progress: bool, force: bool, rerender: bool, lock: StoreLock, created: list[Path],
                scans: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = job.config
    meta = out / META_DIR
    try:
        prev = check_store(job, out, chash, force=force)  # again, now that no one else writes
        done = np.zeros(0, np.int64) if rerender else complete_indices(job, out, idx, chash)
        n_todo = len(idx) - (count_done(idx, done) if len(done) else 0)
        check_space(job, out, n_todo, force)
    except BaseException:
        lock.release()
        _remove_created(created)
        raise
    try:
        write_store_meta(job, out, chash, prev)
        write_scan_report(out, scans)
        ledger = Ledger(meta / "ledger.jsonl")
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write the store's run files ({exc.strerror or exc}: "
                          f"{exc.filename or meta})") from None
    # we hold the lock: every .tmp-* file is abandoned (but a driver that just died may still have
    # workers on a joined cluster for a few seconds: then only files older than a minute)
    n_tmp = clean_tmp(out, min_age_s=60.0 if lock.stale else 0.0)
    if n_tmp:
        log.info("removed %d leftover .tmp-* file(s) of an earlier, interrupted run", n_tmp)
    summary = {**new_summary(cfg.render.threads_per_worker, len(done)), **scan_summary(scans)}
    if len(done):
        log.info("%d of %d sample(s) already complete in %s; rendering the other %d",
                 len(done), len(idx), out, n_todo)
    ledger.event("run_start", config_hash=chash, samples=len(idx), todo=n_todo,
                 skipped=len(done), pid=os.getpid())
    if not n_todo:
        finish_run(job, out, idx, n_todo, None, 0.0, summary, chash, ledger)
        return summary
    todo = todo_chunks(idx, done)
    try:
        run, wall = _run_on_ray(job, out, todo, n_todo, workers, address, progress, chash, ledger, summary, lock)
    except ConfigError:  # refused once Ray was up (e.g. no GPU): leave the folder as it was
        ledger.close()
        lock.release()
        _forget_refused_run(meta, out, prev)
        raise
    finish_run(job, out, idx, n_todo, run, wall, summary, chash, ledger)
    return summary


def _worker_count(ray, cfg, workers: int | None, address: str | None, n_todo: int) -> int:
    """Worker slots: ``--workers``, else the config's ``workers``, else CPUs / threads per worker;
    with ``render.device: gpu`` one per GPU (GpuClusterError when the cluster has none). On the
    embedded cluster a worker that needs more CPUs than the machine has is refused (ConfigError):
    it would wait forever."""
    threads = cfg.render.threads_per_worker
    cpus = int(ray.cluster_resources().get("CPU", 1))
    n_workers = workers or cfg.workers or max(1, cpus // threads)
    if cfg.render.device == "gpu":
        n_gpu = int(ray.cluster_resources().get("GPU", 0))
        if n_gpu < 1:
            raise GpuClusterError(
                f"render.device: gpu, but the Ray cluster{' at ' + address if address else ''} "
                "has no GPUs (ray.cluster_resources() lists none); use render.device: cpu "
                "or start Ray on GPU nodes")
        n_workers = min(workers or cfg.workers or n_gpu, n_gpu)
    elif is_embedded(address) and threads > cpus:
        raise ConfigError(f"render.threads_per_worker: {threads}, but this machine's embedded Ray cluster "
                          f"has {cpus} CPU(s), so no worker could ever start; lower it")
    return max(1, min(n_workers, n_todo))


def _forget_refused_run(meta: Path, out: Path, prev: dict[str, Any] | None) -> None:
    """Leave the folder as it was before a run refused before any work (so that a corrected run is
    not then refused as "another job")."""
    if prev is None:
        for f in ("store.json", "ledger.jsonl", "scans.json"):
            with contextlib.suppress(FileNotFoundError):
                (meta / f).unlink()
        with contextlib.suppress(OSError):
            meta.rmdir()
            out.rmdir()
    else:
        write_json_atomic(meta / "store.json", prev)


def _health(cluster: EmbeddedCluster, lock: StoreLock, refresh_s: float = 10.0):
    """The scheduler's health check on the embedded cluster: why it is lost, or None; it also keeps
    the lock file's record of the cluster's processes current (workers come and go), for a later
    driver to stop them should this one die with its watchdog."""
    last = [time.monotonic()]

    def check() -> str | None:
        if time.monotonic() - last[0] >= refresh_s:
            last[0] = time.monotonic()
            lock.update(ray=cluster.record())
        return cluster.lost()

    return check


def _run_on_ray(job: Job, out: Path, todo, n_todo: int, workers: int | None, address: str | None,
                progress: bool, chash: str, ledger: Ledger, summary: dict[str, Any],
                lock: StoreLock) -> tuple[Scheduler | None, float]:
    """Start or join Ray, run the scheduler to the end (or an interrupt, or a stop), shut down;
    returns (scheduler, wall s)."""
    import ray
    from tqdm import tqdm

    started_ray = False
    cluster: EmbeddedCluster | None = None
    run: Scheduler | None = None
    bar = None
    t0 = time.perf_counter()
    try:
        try:
            try:
                started_ray, cluster = start_ray(address)
            except Exception as exc:  # Ray did not come up (overloaded machine) or the address is unreachable
                first = (str(exc).strip().splitlines() or [""])[0][:300]
                raise RunStopped("cluster_lost", f"Ray could not be {'joined at ' + address if address else 'started'}"
                                                 f" ({type(exc).__name__}: {first})") from None
            if cluster is not None:
                lock.update(ray=cluster.record())
            with _sigterm_as_interrupt():  # after ray.init, which installs its own SIGTERM handler
                n_workers = _worker_count(ray, job.config, workers, address, n_todo)
                bar = tqdm(total=n_todo, desc="render", unit="sample", disable=not progress, file=sys.stderr)
                run = Scheduler(ray, job, out, todo, n_workers, chash, ledger, bar,
                                health=_health(cluster, lock) if cluster is not None else None)
                first = ", ".join(f"{s}: {len(v)}" for s, v in list(run.queues.items())[:20] if v)
                log.info("rendering %d samples (%s%s) with %d worker(s) x %d thread(s) into %s",
                         n_todo, first, "" if run.queued >= n_todo else f"; first {run.queued} planned",
                         n_workers, job.config.render.threads_per_worker, out)
                t0 = time.perf_counter()
                run.run()
        except ConfigError:
            ledger.close()
            raise
        except KeyboardInterrupt:
            summary["interrupted"] = True
            log.warning("interrupted: stopping the workers; complete samples stay, the rest render "
                        "on the next run with the same command (or --resume)")
        except RunStopped as exc:
            if run is not None and run.stopped is None:
                run.stopped = exc
            log.error("stopping the run (%s): %s", exc.reason, exc.message)
    finally:
        with contextlib.suppress(BaseException):
            if bar is not None:
                bar.close()
        with contextlib.suppress(BaseException):
            if run is not None:
                run.shutdown("interrupted" if summary["interrupted"] else
                             (run.stopped.reason if run.stopped else "finished"))
        if started_ray:
            with contextlib.suppress(BaseException):
                ray.shutdown()
        elif summary["interrupted"]:
            time.sleep(1.0)  # let killed actors of an external cluster stop writing
        if cluster is not None:
            cluster.close()
        with contextlib.suppress(BaseException):
            clean_tmp(out)
    return run, time.perf_counter() - t0

