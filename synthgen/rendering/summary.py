"""How a render run ends: the summary dict, ``_meta/run.json``, the quarantine list, the ``run_end``
ledger event and the store's dataset card. Used by :mod:`.driver`; every file is written atomically and
printed to stderr instead when it cannot be written (disk full), so a run's outcome is never lost."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from ..atomic import write_json_atomic
from ..contract import META_DIR
from ..store import sample_complete
from .config import Job
from .ledger import Ledger, update_quarantine
from .planning import IndexSet
from .scheduler import Scheduler

log = logging.getLogger("synthgen.render")


def new_summary(threads: int, skipped: int) -> dict[str, Any]:
    return {"written": 0, "skipped": skipped, "retried": 0, "failed": [], "worker_deaths": 0,
            "recycled": 0, "workers": 0, "threads_per_worker": threads, "worker_stats": [],
            "peak_worker_rss_mb": None, "interrupted": False, "stopped": None, "not_rendered": 0,
            "preview_errors": 0, "wall_s": 0.0, "samples_per_min": 0.0,
            "timings": {"setup_s": 0.0, "render_s": 0.0, "write_s": 0.0}, "resamples": 0, "unsaved": []}


def save_run_file(path: Path, obj: Any, summary: dict[str, Any], what: str) -> None:
    """Write a run file; when that fails (disk full...), print its content to stderr instead."""
    try:
        write_json_atomic(path, obj)
    except OSError as exc:
        summary["unsaved"].append(str(path))
        print(f"synthgen render: could not write {path} ({exc.strerror or exc}); {what} follows:\n"
              + json.dumps(obj, indent=1, sort_keys=True, default=str), file=sys.stderr)


def finish_run(job: Job, out: Path, idx: IndexSet, n_todo: int, run: Scheduler | None, wall: float,
            summary: dict[str, Any], chash: str, ledger: Ledger) -> None:
    """Fill the summary, update the quarantine list, write ``_meta/run.json``, the ``run_end``
    event (each printed to stderr when it cannot be written) and the store's dataset card."""
    meta = out / META_DIR
    quarantined = run.quarantined if run else []
    stats = run.workers if run else []
    peaks = [w["peak_rss_mb"] for w in stats if w.get("peak_rss_mb")]
    written = run.written if run else 0
    stopped = run.stopped if run else None
    summary.update(
        written=written, failed=quarantined, wall_s=wall, workers=len(run.slots) if run else 0,
        retried=run.retried if run else 0, worker_deaths=run.worker_deaths if run else 0,
        recycled=run.recycled if run else 0, worker_stats=stats, peak_worker_rss_mb=max(peaks) if peaks else None,
        samples_per_min=60.0 * written / wall if wall > 0 else 0.0,
        timings=dict(run.timings) if run else summary["timings"], resamples=run.resamples if run else 0,
        preview_errors=run.preview_errors if run else 0,
        stopped={"reason": stopped.reason, "message": stopped.message} if stopped else None,
        not_rendered=max(0, n_todo - written - len(quarantined)))
    went_to_end = not summary["interrupted"] and stopped is None

    def settled(e: dict) -> bool:  # an earlier quarantine entry that this run resolved
        if went_to_end and isinstance(e.get("index"), int) and e["index"] in idx:
            return True
        return bool(e.get("key")) and sample_complete(out, e["key"], chash)

    try:
        update_quarantine(meta, quarantined, settled)
    except OSError as exc:
        summary["unsaved"].append(str(meta / "quarantine.json"))
        print(f"synthgen render: could not update {meta / 'quarantine.json'} ({exc.strerror or exc}); this "
              "run's quarantined samples follow:\n" + json.dumps(quarantined, indent=1, default=str), file=sys.stderr)
    status = ("interrupted" if summary["interrupted"] else stopped.reason if stopped
              else ("failures" if quarantined else "complete"))
    save_run_file(meta / "run.json", {**summary, "status": status, "config_hash": chash, "finished": time.time()},
          summary, "the run summary")
    end = dict(status=status, written=written, skipped=summary["skipped"], retried=summary["retried"],
               failed=len(quarantined), worker_deaths=summary["worker_deaths"], recycled=summary["recycled"],
               not_rendered=summary["not_rendered"],
               workers=[{k: w.get(k) for k in ("pid", "samples", "peak_rss_mb", "end")} for w in stats])
    if stopped:
        end["stopped"] = summary["stopped"]
    if not ledger.event("run_end", **end):
        summary["unsaved"].append(str(ledger.path))
        print("synthgen render: could not append run_end to the ledger; it follows:\n"
              + json.dumps(end, sort_keys=True, default=str), file=sys.stderr)
    ledger.close()
    write_card(out)


def write_card(out: Path) -> None:
    """STORE/README.md (dataset card with every asset's licence) and _meta/assets.json; informative,
    so it never fails the run."""
    from ..card import write_store_card

    try:
        write_store_card(out)
    except Exception as exc:
        log.warning("could not write the dataset card of %s: %s", out, exc)
