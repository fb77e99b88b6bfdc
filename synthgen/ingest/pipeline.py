"""The ingest run: detect the format, scan frames, then per frame load -> register -> validate ->
segment -> write (``synthgen.contract.write_sample``), and finally the report.

Every frame found ends up either written to the store or quarantined with its reasons;
``found == ingested + quarantined`` always holds. Nothing is written outside ``out``.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import hashlib
import logging
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .. import __version__
from ..atomic import write_json_atomic
from ..contract import ALL_MEMBERS, META_DIR, ContractError, member_path, write_sample
from .common import (P3_TO_REC709, FrameError, FrameRef, LoadedFrame, SourceError, display_path, linear_to_srgb8,
                     srgb8_to_linear)
from .formats import all_readers, detect_format
from .options import IngestOptions
from .validate import frame_digest, validate

log = logging.getLogger("synthgen.ingest")
REPORT_NAME = "ingest_report.json"
QUARANTINE_NAME = "ingest_quarantine.json"


def _rel(path: str, root: Path) -> str:
    try:
        return display_path(os.path.relpath(path, root))
    except ValueError:
        return display_path(path)


def _remove_sample(out: Path, key: str) -> None:
    """Delete a previously written sample ``key`` (record first, so it never looks complete)."""
    for m in ("json",) + tuple(x for x in ALL_MEMBERS if x != "json"):
        with contextlib.suppress(FileNotFoundError):
            member_path(out, key, m).unlink()


def register(frame: LoadedFrame) -> tuple[np.ndarray, str | None]:
    """Bring the colour onto the depth grid. Returns ``(rgb, note)``.

    Equal sizes: unchanged. Different sizes with a known registration (``frame.registered``: the
    format says the depth covers the colour image's field of view): the colour is resized to the
    depth resolution (Pillow BOX filter when shrinking, bilinear otherwise; ``K`` is already given
    for the depth grid by the reader). Otherwise raises FrameError ``resolution_mismatch``.
    """
    dh, dw = frame.depth.shape
    h, w = frame.rgb.shape[:2]
    if (h, w) == (dh, dw):
        return frame.rgb, None
    if not frame.registered:
        raise FrameError("resolution_mismatch", f"colour is {w}x{h} but depth is {dw}x{dh} and no registration "
                                                "between them is known")
    shrink = dw <= w and dh <= h
    filt = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    if frame.rgb.dtype == np.uint8:
        rgb = np.asarray(Image.fromarray(frame.rgb).resize((dw, dh), filt))
    else:
        rgb = np.stack([np.asarray(Image.fromarray(frame.rgb[..., c].astype(np.float32), "F").resize((dw, dh), filt))
                        for c in range(3)], -1)
    return rgb, f"colour resized from {w}x{h} to the depth grid {dw}x{dh}"


def _fov(K: np.ndarray, w: int, h: int) -> tuple[float, float]:
    return (math.degrees(2 * math.atan(w / 2 / K[0, 0])), math.degrees(2 * math.atan(h / 2 / K[1, 1])))


def process_frame(reader_name: str, ref: FrameRef, opts: IngestOptions, out: Path, source: Path) -> dict[str, Any]:
    """Ingest one frame. Never raises for bad input: returns the frame's report entry
    (``status`` ``ingested`` or ``quarantined`` with ``reasons``), plus a private ``_digest``."""
    entry: dict[str, Any] = {"key": ref.key, "subject_id": ref.subject_id,
                             "files": {k: _rel(v, source) for k, v in ref.files.items()}}

    def quarantine(reasons, metrics=None):
        _remove_sample(out, ref.key)
        entry.update(status="quarantined", reasons=[{"code": c, "detail": d} for c, d in reasons])
        if metrics:
            entry["metrics"] = metrics
        return entry

    if ref.error:
        return quarantine([ref.error])
    reader = all_readers()[reader_name]
    try:
        frame = reader.load(ref, opts)
        rgb, reg_note = register(frame)
    except FrameError as exc:
        return quarantine([(exc.reason, exc.detail)])
    except Exception as exc:  # a reader bug or an exotic file: quarantine, never abort the run
        log.debug("unexpected error on %s", ref.key, exc_info=True)
        return quarantine([("unexpected_error", f"{type(exc).__name__}: {exc}")])
    digest = frame_digest(frame.rgb, frame.depth)
    if rgb.dtype == np.uint8:
        rgb8 = rgb
        linear = srgb8_to_linear(rgb8)
        colour_note = "8-bit sRGB decoded with the IEC 61966-2-1 EOTF to linear"
        prof = frame.capture.get("colour_profile") or ""
        if "P3" in prof:
            linear = np.clip(linear @ P3_TO_REC709.T, 0, None).astype(np.float32)
            colour_note += "; Display P3 primaries converted to Rec.709/sRGB primaries"
    else:
        linear = rgb.astype(np.float32)
        rgb8 = linear_to_srgb8(linear)
        colour_note = "linear float colour stored as is"
    frame.rgb = rgb
    metrics, reasons = validate(frame, rgb8, opts.thresholds)
    if reasons:
        return quarantine(reasons, metrics)
    h, w = frame.depth.shape
    if opts.segment:
        from .segment import detector_info, model_info, person_evidence, person_mask

        try:
            ev = person_evidence(rgb8, opts.min_person_confidence)
        except Exception as exc:
            return quarantine([("segmentation_failed", f"person detection: {type(exc).__name__}: {exc}")], metrics)
        metrics["person_present"] = ev["person_present"]
        person = ev["person_present"] >= opts.min_person_confidence
        if not person and opts.no_person == "quarantine":
            return quarantine([("no_person", f"no confident person: person_present {ev['person_present']:.2f} < "
                                              f"--min-person-confidence {opts.min_person_confidence:g} (face "
                                              f"{ev['face_score']:.2f}, pose {ev['pose_detected']})")], metrics)
        if person:
            try:
                mask = person_mask(rgb8)
            except Exception as exc:
                return quarantine([("segmentation_failed", f"{type(exc).__name__}: {exc}")], metrics)
            mask_rec = dict(model_info(), kind="person",
                            meaning="soft person probability in [0, 1] (MediaPipe selfie segmentation)")
        else:
            mask = np.zeros((h, w), np.float32)
            mask_rec = dict(model_info(), kind="none",
                            meaning="no confident person in the frame: all zeros (the segmenter was not applied)")
        mask_rec.update(person_present=ev["person_present"], person_evidence=ev,
                        min_person_confidence=opts.min_person_confidence, person_detector=detector_info())
        metrics["mask_mean"] = round(float(mask.mean()), 6)
    else:
        mask = np.ones((h, w), np.float32)
        mask_rec = {"source": "none", "kind": "whole_frame",
                    "meaning": "segmentation switched off: all ones (whole frame), not a person mask"}
    mask_rec["coverage"] = round(float(mask.mean()), 6)
    K = np.asarray(frame.K, dtype=float)
    fx, fy = _fov(K, w, h)
    camera = {"K": K.tolist(),
              "camera_to_world": None if frame.camera_to_world is None else np.asarray(frame.camera_to_world).tolist(),
              "fov_x_deg": fx, "fov_y_deg": fy, "intrinsics_source": frame.intrinsics_source, **frame.camera_extra}
    depth_rec = {"kind": "planar_z", "units": "metres", "metric": bool(frame.metric), "invalid_value": 0.0,
                 **frame.depth_extra}
    if not frame.metric:
        depth_rec["relative_note"] = ("metric=false: values are planar depth up to an unknown scale (monotonic in "
                                      "true depth, larger = farther); 'units' does not apply. See capture.depth_units.")
    capture = dict(frame.capture)
    capture.update(colour=colour_note, validation={"passed": True, "metrics": metrics},
                   source_root=display_path(source.resolve()))
    if reg_note:
        capture["resampling"] = reg_note
    rec = {"source": "real", "subject_id": ref.subject_id, "camera": camera, "depth": depth_rec, "mask": mask_rec,
           "capture": capture, "synthgen_version": __version__}
    try:
        write_sample(out, ref.key, linear, frame.depth, mask, rec)
    except (ContractError, ValueError) as exc:
        return quarantine([("write_failed", str(exc))], metrics)
    entry.update(status="ingested", metrics=metrics, _digest=digest)
    return entry


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
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    root = source if source.is_dir() else source.parent
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(reader.name, r, opts, out, root) for r in refs]
    from tqdm import tqdm

    bar = dict(total=len(jobs), desc=f"ingest {reader.name}", unit="frame", disable=not progress, file=sys.stderr)
    with _mpl_config_inside(out):
        if opts.address:
            results, execution = _run_on_ray(jobs, opts, bar)
        elif opts.workers > 1 and len(jobs) > 1:
            n = min(opts.workers, len(jobs))
            with ProcessPoolExecutor(max_workers=n, mp_context=get_context("spawn")) as ex:
                results = list(tqdm(ex.map(_run, jobs, chunksize=4), **bar))
            execution = {"mode": "processes", "workers": n}
        else:
            results = [process_frame(*j) for j in tqdm(jobs, **bar)]
            execution = {"mode": "in-process", "workers": 1}
    first: dict[str, str] = {}
    for e in results:
        dg = e.pop("_digest", None)
        if e["status"] != "ingested" or dg is None:
            continue
        if dg in first:
            _remove_sample(out, e["key"])
            e.update(status="quarantined",
                     reasons=[{"code": "duplicate", "detail": f"pixels identical to frame {first[dg]}"}])
        else:
            first[dg] = e["key"]
    ingested = [e for e in results if e["status"] == "ingested"]
    quarantined = [e for e in results if e["status"] == "quarantined"]
    reasons = collections.Counter(r["code"] for e in quarantined for r in e["reasons"])
    seg = None
    if opts.segment and ingested:
        from .segment import detector_info, model_info

        seg = dict(model_info(), person_detector=detector_info(), min_person_confidence=opts.min_person_confidence,
                   no_person=opts.no_person,
                   frames_without_person=sum(1 for e in ingested if e.get("metrics", {}).get("person_present", 1.0)
                                             < opts.min_person_confidence))
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
    meta = out / META_DIR
    write_json_atomic(meta / QUARANTINE_NAME, {"source": report["source"], "format": reader.name,
                                               "quarantined": quarantined})
    write_json_atomic(meta / REPORT_NAME, report)
    try:  # dataset card (README.md) and _meta/assets.json; informative, never fails the run
        from ..card import write_store_card

        write_store_card(out)
    except Exception as exc:
        log.warning("could not write the dataset card of %s: %s", out, exc)
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
