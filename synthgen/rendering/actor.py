"""The Ray render actor: a warm Blender scene per worker process.

Calls run on the actor process's main thread (Blender's operators need it); post-processing and
writing run on the actor's writer thread, overlapped with the next render.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from typing import Any

from .config import Job, content_hash
from .sampling import sample_key, scan_for

log = logging.getLogger("synthgen.render")

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
        from ..contract import ContractError
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
