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
- Without ``--address`` (and ``RAY_ADDRESS``) an embedded local cluster starts, never a leftover
  local one; ``--address`` joins a cluster (:func:`synthgen.raycluster.init_ray`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ..atomic import write_json_atomic
from ..contract import META_DIR
from ..errors import GpuClusterError, StoreMismatchError  # noqa: F401 (re-exported)
from ..store import clean_tmp, complete_keys
from .config import Job, content_hash
from .ledger import Ledger, check_store, update_quarantine, write_store_meta
from .sampling import sample_key
from .scheduler import STOP, Scheduler
from ..raycluster import init_ray

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


def run_render(job: Job, out_dir: str | os.PathLike, indices: list[int] | None = None,
               workers: int | None = None, address: str | None = None,
               progress: bool = True, force: bool = False, rerender: bool = False) -> dict[str, Any]:
    """Render ``indices`` (default: all samples of the job) into ``out_dir`` on Ray.

    Samples already complete in ``out_dir`` (see :func:`synthgen.store.sample_complete`) are skipped
    unless ``rerender``. Without ``address`` (and ``RAY_ADDRESS``) an embedded local Ray cluster is
    started (:func:`synthgen.raycluster.init_ray`). A KeyboardInterrupt (Ctrl-C, SIGTERM) stops the
    run cleanly and is reported as ``interrupted`` in the summary instead of propagating.

    Returns:
        Summary dict: ``written``, ``skipped`` (already complete), ``retried`` (re-submissions after
        failures), ``failed`` (quarantined entries: key, index, scan_id, reason, error, attempts),
        ``worker_deaths``, ``recycled``, ``workers`` (slots), ``worker_stats`` (per worker process:
        pid, node, samples, RSS at start / last / peak in MiB, how it ended), ``peak_worker_rss_mb``,
        ``interrupted``, ``wall_s``, ``samples_per_min``, summed ``timings`` (setup_s, render_s,
        write_s), ``resamples`` and ``threads_per_worker``.

    Raises:
        StoreMismatchError: ``out_dir`` holds another job and not ``force`` (before Ray starts).
        GpuClusterError: ``render.device: gpu`` on a cluster without GPUs (the folder is left as it was).
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
    summary = _new_summary(cfg.render.threads_per_worker, len(done_before))
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
        update_quarantine(meta, [], set(keys.values()), set(keys.values()))
        _write_card(out)
        return summary
    run, wall = _run_on_ray(job, out, todo, workers, address, progress, chash, ledger, prev, summary)
    _finish(job, meta, todo, done_before, run, wall, summary, chash, ledger)
    _write_card(out)
    return summary


def _write_card(out: Path) -> None:
    """STORE/README.md (dataset card with every asset's licence) and _meta/assets.json; informative,
    so it never fails the run."""
    from ..card import write_store_card

    try:
        write_store_card(out)
    except Exception as exc:
        log.warning("could not write the dataset card of %s: %s", out, exc)


def _new_summary(threads: int, skipped: int) -> dict[str, Any]:
    return {"written": 0, "skipped": skipped, "retried": 0, "failed": [], "worker_deaths": 0,
            "recycled": 0, "workers": 0, "threads_per_worker": threads, "worker_stats": [],
            "peak_worker_rss_mb": None, "interrupted": False, "wall_s": 0.0, "samples_per_min": 0.0,
            "timings": {"setup_s": 0.0, "render_s": 0.0, "write_s": 0.0}, "resamples": 0}


def _worker_count(ray, cfg, workers: int | None, address: str | None, n_todo: int) -> int:
    """Worker slots: ``--workers``, else the config's ``workers``, else CPUs / threads per worker;
    with ``render.device: gpu`` one per GPU (GpuClusterError when the cluster has none)."""
    threads = cfg.render.threads_per_worker
    n_workers = workers or cfg.workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
    if cfg.render.device == "gpu":
        n_gpu = int(ray.cluster_resources().get("GPU", 0))
        if n_gpu < 1:
            raise GpuClusterError(
                f"render.device: gpu, but the Ray cluster{' at ' + address if address else ''} "
                "has no GPUs (ray.cluster_resources() lists none); use render.device: cpu "
                "or start Ray on GPU nodes")
        n_workers = min(workers or cfg.workers or n_gpu, n_gpu)
    return max(1, min(n_workers, n_todo))


def _forget_refused_run(meta: Path, out: Path, prev: dict[str, Any] | None) -> None:
    """Leave the folder as it was before a run refused before any work (so that a corrected run is
    not then refused as "another job")."""
    if prev is None:
        for f in ("store.json", "ledger.jsonl"):
            with contextlib.suppress(FileNotFoundError):
                (meta / f).unlink()
        with contextlib.suppress(OSError):
            meta.rmdir()
            out.rmdir()
    else:
        write_json_atomic(meta / "store.json", prev)


def _run_on_ray(job: Job, out: Path, todo: list[int], workers: int | None, address: str | None,
                progress: bool, chash: str, ledger: Ledger, prev: dict[str, Any] | None,
                summary: dict[str, Any]) -> tuple[Scheduler | None, float]:
    """Start or join Ray, run the scheduler to the end (or an interrupt), shut down; returns (scheduler, wall s)."""
    import ray
    from tqdm import tqdm

    started_ray = False
    run: Scheduler | None = None
    bar = None
    t0 = time.perf_counter()
    try:
        try:
            started_ray = init_ray(address)
            with _sigterm_as_interrupt():  # after ray.init, which installs its own SIGTERM handler
                n_workers = _worker_count(ray, job.config, workers, address, len(todo))
                bar = tqdm(total=len(todo), desc="render", unit="sample", disable=not progress, file=sys.stderr)
                run = Scheduler(ray, job, out, todo, n_workers, chash, ledger, bar)
                log.info("rendering %d samples (%s) with %d worker(s) x %d thread(s) into %s",
                         len(todo), ", ".join(f"{s}: {len(v)}" for s, v in run.queues.items()),
                         n_workers, job.config.render.threads_per_worker, out)
                t0 = time.perf_counter()
                run.run()
        except GpuClusterError:
            ledger.close()
            _forget_refused_run(out / META_DIR, out, prev)
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
    return run, time.perf_counter() - t0


def _finish(job: Job, meta: Path, todo: list[int], done_before: set[str], run: Scheduler | None, wall: float,
            summary: dict[str, Any], chash: str, ledger: Ledger) -> None:
    """Fill the summary, update the quarantine list, write ``_meta/run.json`` and the ``run_end`` event."""
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
    update_quarantine(meta, quarantined, attempted if not summary["interrupted"] else
                      written | {e["key"] for e in quarantined}, done_before | written)
    status = "interrupted" if summary["interrupted"] else ("failures" if quarantined else "complete")
    write_json_atomic(meta / "run.json", {**summary, "status": status, "config_hash": chash,
                                          "finished": time.time()})
    ledger.event("run_end", status=status, written=len(results), skipped=len(done_before),
                 retried=summary["retried"], failed=len(quarantined), worker_deaths=summary["worker_deaths"],
                 recycled=summary["recycled"], workers=[{k: w.get(k) for k in ("pid", "samples", "peak_rss_mb", "end")}
                                                        for w in stats])
    ledger.close()


# --------------------------------------------------------------------------------------------
# CLI

