"""The Ray render actor: a warm Blender scene per worker process.

Calls run on the actor process's main thread (Blender's operators need it); post-processing and
writing run on the actor's writer thread, overlapped with the next render.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from typing import Any

from ..atomic import is_storage_error
from .config import Job, content_hash
from .sampling import sample_key, scan_for

log = logging.getLogger("synthgen.render")


def _frame(exc: BaseException, func: str):
    """The innermost frame of function ``func`` on ``exc``'s traceback, or None."""
    tb, found = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_name == func:
            found = tb.tb_frame
        tb = tb.tb_next
    return found


def _raised_in(exc: BaseException, func: str) -> bool:
    return _frame(exc, func) is not None


def _failing_hdri(exc: BaseException, job: Job, index: int) -> str | None:
    """The HDRI file Blender failed to load when ``exc`` was raised inside ``set_hdri``, else None.

    Such a sample fails with reason ``asset_error`` and is not retried (the file is the problem, not
    the worker); the driver's preflight (:mod:`synthgen.rendering.hdri_check`) normally refuses a
    bad HDRI before any worker starts."""
    fr = _frame(exc, "set_hdri")
    if fr is None:
        return None
    return str(fr.f_locals.get("path", "(unknown file)"))


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
        except Exception as exc:  # unexpected: retried on a fresh worker, unless an asset is to blame
            hdri = _failing_hdri(exc, self.job, index)
            if hdri is not None:
                failed = {**base, "status": "error", "reason": "asset_error", "retryable": False,
                          "error": f"HDRI {hdri} cannot be loaded by Blender ({type(exc).__name__}: "
                                   f"{str(exc).strip()[:200]})", "scan_id": scan_id}
            elif is_storage_error(exc):
                failed = {**base, "status": "error", "reason": "io_error", "retryable": False, "stop": True,
                          "error": f"{type(exc).__name__}: {str(exc).strip()[:300]}", "scan_id": scan_id}
            else:
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

    def _finish(self, base: dict, scan_id: str, rendered) -> dict[str, Any]:
        """Post-process and write on the writer thread; the write's outcome as a result dict.

        - the sample's record and members are complete but its preview failed (previews are best
          effort): ``ok``, with ``preview_error``;
        - a storage error (disk full, quota, I/O error, read-only): ``io_error``, not retried, and
          ``stop`` (the scheduler stops giving out work);
        - a contract violation: ``contract_error``; anything else: ``exception`` (retried).
        """
        from ..contract import ContractError
        from .worker import finish_sample

        t0 = time.perf_counter()
        try:
            res = finish_sample(rendered, self.out_dir, previews=self.previews, config_hash=self.config_hash)
        except ContractError as exc:
            return {**base, "status": "error", "reason": "contract_error", "retryable": False,
                    "error": f"ContractError: {exc}", "scan_id": scan_id}
        except Exception as exc:
            if _raised_in(exc, "save_preview") and self._written(base["key"]):
                log.warning("%s: written, but its preview was not (%s: %s)", base["key"], type(exc).__name__, exc)
                timings = dict(getattr(rendered, "timings", {}) or {})
                timings["write_s"] = time.perf_counter() - t0
                return {**base, "status": "ok", "timings": timings, "resamples": len(getattr(rendered, "rejected", [])),
                        "scan_id": scan_id, "preview_error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            if is_storage_error(exc):
                return {**base, "status": "error", "reason": "io_error", "retryable": False, "stop": True,
                        "error": f"{type(exc).__name__}: {str(exc).strip()[:300]}", "scan_id": scan_id}
            return self._unexpected(base, scan_id, exc)
        return {**base, "status": "ok", "timings": res["timings"], "resamples": res["resamples"],
                "scan_id": res["record"]["subject_id"]}

    def _written(self, key: str) -> bool:
        """The sample's record and members are on disk and match (its write completed)."""
        from ..contract import verify_sample

        try:
            return verify_sample(self.out_dir, key) == []
        except Exception:
            return False

    def pid(self) -> int:
        return os.getpid()


# --------------------------------------------------------------------------------------------
# The store's run ledger
