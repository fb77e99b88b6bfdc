"""The ingest run: detect the format, scan frames, then per frame load -> register -> validate ->
segment -> write (``synthgen.contract.write_sample``; one frame: :mod:`.frame`), and finally the report.

Every frame found ends up either written to the store or quarantined with its reasons;
``found == ingested + quarantined`` always holds. Nothing is written outside ``out``.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import hashlib
import logging
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic import write_json_atomic
from ..contract import META_DIR
from .common import FrameRef, SourceError, display_path
from .formats import detect_format
from .frame import process_frame, register, remove_sample
from .options import IngestOptions

__all__ = ["ingest", "summary_text", "process_frame", "register", "REPORT_NAME", "QUARANTINE_NAME"]

log = logging.getLogger("synthgen.ingest")
REPORT_NAME = "ingest_report.json"
QUARANTINE_NAME = "ingest_quarantine.json"


def _unique_keys(refs: list[FrameRef]) -> None:
    seen: set[str] = set()
    for r in refs:
        if r.key in seen:
            tag = hashlib.sha1("|".join(sorted(r.files.values())).encode("utf-8", "surrogateescape")).hexdigest()[:8]
            r.key = f"{r.key}-{tag}"
        seen.add(r.key)


def _run(args):
    return process_frame(*args)


def _run_batch(batch):
    """Ray task body: ingest a few frames (one task per batch amortises the task overhead)."""
    return [process_frame(*j) for j in batch]


RAY_BATCH = 4
"""Frames per Ray task."""


def _run_on_ray(jobs: list, opts: IngestOptions, bar: dict) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run ``process_frame`` for every job as Ray tasks (``RAY_BATCH`` frames per task, one CPU each)
    on the cluster that :func:`synthgen.raycluster.init_ray` joins or starts for ``opts.address``
    (``local``: an embedded local Ray). Results come back in job order, so keys, outputs and the
    report equal a local run's. Every node writes its samples to ``out`` directly: on a multi-node
    cluster ``--out`` must be a path all nodes share. Returns ``(entries, execution info)``."""
    import ray
    from tqdm import tqdm

    from ..raycluster import init_ray

    started = init_ray(opts.address)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        env = {k: os.environ[k] for k in ("MPLCONFIGDIR",) if os.environ.get(k)}
        task = ray.remote(num_cpus=1, max_retries=2)(_run_batch)
        if env:
            task = task.options(runtime_env={"env_vars": env})
        size = max(1, min(RAY_BATCH, -(-len(jobs) // max(cpus, 1))))  # spread small runs over every CPU
        batches = [jobs[i:i + size] for i in range(0, len(jobs), size)]
        refs = [task.remote(b) for b in batches]
        pending = set(refs)
        with tqdm(**bar) as pbar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for r in done:
                    pending.discard(r)
                    pbar.update(len(batches[refs.index(r)]))
        results = [e for r in refs for e in ray.get(r)]
    finally:
        if started:
            ray.shutdown()
    return results, {"mode": "ray", "address": opts.address, "nodes": nodes, "cpus": cpus,
                     "tasks": len(batches), "frames_per_task": size}


@contextlib.contextmanager
def _mpl_config_inside(out: Path):
    """Point MPLCONFIGDIR (matplotlib, imported by mediapipe) at a temporary folder inside ``out``
    for the run, unless the caller set one, and remove it afterwards: nothing is written outside
    ``--out`` (issue 14 item 6). Spawned workers inherit the variable."""
    if os.environ.get("MPLCONFIGDIR"):
        yield
        return
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix=".tmp-mplconfig-", dir=out)
    os.environ["MPLCONFIGDIR"] = d
    try:
        yield
    finally:
        os.environ.pop("MPLCONFIGDIR", None)
        shutil.rmtree(d, ignore_errors=True)


def _scan(source: Path, out: Path, opts: IngestOptions) -> tuple[Any, list[FrameRef]]:
    """``(reader, frame refs with unique keys)`` of ``source``; SourceError as :func:`ingest` says."""
    if source.exists() and out.resolve() == source.resolve():
        raise SourceError("--out must not be the source folder")
    reader = detect_format(source, opts.format)
    try:
        refs = reader.scan(source, opts, exclude=out)
    except SourceError:
        raise
    except Exception as exc:  # a layout the reader cannot walk: bad input, never a traceback
        log.debug("scan failed", exc_info=True)
        raise SourceError(f"{display_path(source)}: format {reader.name} cannot read this source "
                          f"({type(exc).__name__}: {exc}); formats tried: {reader.name}") from exc
    for w in reader.warnings:
        log.warning("%s: %s", display_path(source), w)
    if not refs:
        raise SourceError(f"{display_path(source)}: no frames found for format {reader.name}")
    _unique_keys(refs)
    return reader, refs


def _execute(jobs: list, opts: IngestOptions, bar: dict) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """:func:`process_frame` for every job on Ray, in worker processes or in this process;
    ``(entries in job order, execution info)``."""
    from tqdm import tqdm

    if opts.address:
        return _run_on_ray(jobs, opts, bar)
    if opts.workers > 1 and len(jobs) > 1:
        n = min(opts.workers, len(jobs))
        with ProcessPoolExecutor(max_workers=n, mp_context=get_context("spawn")) as ex:
            results = list(tqdm(ex.map(_run, jobs, chunksize=4), **bar))
        return results, {"mode": "processes", "workers": n}
    return [process_frame(*j) for j in tqdm(jobs, **bar)], {"mode": "in-process", "workers": 1}


def _quarantine_duplicates(results: list[dict[str, Any]], out: Path) -> None:
    """Quarantine (and delete) every ingested frame whose pixels equal an earlier one's; drops ``_digest``."""
    first: dict[str, str] = {}
    for e in results:
        dg = e.pop("_digest", None)
        if e["status"] != "ingested" or dg is None:
            continue
        if dg in first:
            remove_sample(out, e["key"])
            e.update(status="quarantined",
                     reasons=[{"code": "duplicate", "detail": f"pixels identical to frame {first[dg]}"}])
        else:
            first[dg] = e["key"]


def _segmentation_info(opts: IngestOptions, ingested: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The report's ``segmentation`` entry (None when off or nothing was ingested)."""
    if not (opts.segment and ingested):
        return None
    from .segment import detector_info, model_info

    return dict(model_info(), person_detector=detector_info(), min_person_confidence=opts.min_person_confidence,
                no_person=opts.no_person,
                frames_without_person=sum(1 for e in ingested if e.get("metrics", {}).get("person_present", 1.0)
                                          < opts.min_person_confidence))


def _write_report(out: Path, report: dict[str, Any], quarantined: list[dict[str, Any]]) -> None:
    """``_meta/`` quarantine list and report, then the dataset card (never fails the run)."""
    meta = out / META_DIR
    write_json_atomic(meta / QUARANTINE_NAME, {"source": report["source"], "format": report["format"],
                                               "quarantined": quarantined})
    write_json_atomic(meta / REPORT_NAME, report)
    try:  # dataset card (README.md) and _meta/assets.json; informative, never fails the run
        from ..card import write_store_card

        write_store_card(out)
    except Exception as exc:
        log.warning("could not write the dataset card of %s: %s", out, exc)


def ingest(source: str | os.PathLike, out: str | os.PathLike, opts: IngestOptions | None = None,
           progress: bool = True) -> dict[str, Any]:
    """Ingest ``source`` into the store ``out`` and return the report (also written to
    ``out/_meta/ingest_report.json``; quarantined frames also to ``out/_meta/ingest_quarantine.json``).

    Raises:
        SourceError: missing/empty source, unknown or ambiguous format, unreadable intrinsics file,
            or no frames found.
    """
    opts = opts or IngestOptions()
    source, out = Path(source), Path(out)
    reader, refs = _scan(source, out, opts)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    root = source if source.is_dir() else source.parent
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(reader.name, r, opts, out, root) for r in refs]
    bar = dict(total=len(jobs), desc=f"ingest {reader.name}", unit="frame", disable=not progress, file=sys.stderr)
    with _mpl_config_inside(out):
        results, execution = _execute(jobs, opts, bar)
    _quarantine_duplicates(results, out)
    ingested = [e for e in results if e["status"] == "ingested"]
    quarantined = [e for e in results if e["status"] == "quarantined"]
    reasons = collections.Counter(r["code"] for e in quarantined for r in e["reasons"])
    seg = _segmentation_info(opts, ingested)
    report = {
        "schema": "synthgen.ingest_report/1",
        "synthgen_version": __version__,
        "source": display_path(source.resolve()),
        "out": display_path(out.resolve()),
        "format": reader.name,
        "started": started,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "options": opts.model_dump(mode="json"),
        "execution": execution,
        "segmentation": seg,
        "warnings": list(reader.warnings),
        "counts": {"found": len(results), "ingested": len(ingested), "quarantined": len(quarantined)},
        "quarantine_reasons": dict(sorted(reasons.items())),
        "frames": results,
    }
    assert report["counts"]["found"] == len(ingested) + len(quarantined)
    _write_report(out, report, quarantined)
    return report


def summary_text(report: dict[str, Any], max_lines: int = 15) -> str:
    """A readable multi-line summary of a report for the terminal."""
    c = report["counts"]
    lines = [f"synthgen ingest: {report['source']} (format {report['format']})",
             f"  found {c['found']} frame(s): {c['ingested']} ingested, {c['quarantined']} quarantined"]
    for w in report.get("warnings") or []:
        lines.append(f"  WARNING: {w}")
    if report["quarantine_reasons"]:
        lines.append("  quarantine reasons: " + ", ".join(f"{k} x{v}" for k, v in report["quarantine_reasons"].items()))
        shown = 0
        for e in report["frames"]:
            if e["status"] == "quarantined":
                if shown == max_lines:
                    lines.append(f"    ... {c['quarantined'] - shown} more in the report")
                    break
                lines.append(f"    {e['key']}: " + "; ".join(f"{r['code']}: {r['detail']}" for r in e["reasons"]))
                shown += 1
    if report.get("segmentation"):
        s = report["segmentation"]
        lines.append(f"  masks: {s['model']} (mediapipe {s['mediapipe_version']}); "
                     f"{s.get('frames_without_person', 0)} ingested frame(s) without a confident person "
                     f"(mask.kind none, all zeros)")
    else:
        lines.append("  masks: segmentation off (masks are all ones, mask.source = none)")
    lines.append(f"  report: {Path(report['out']) / META_DIR / REPORT_NAME}")
    return "\n".join(lines)
