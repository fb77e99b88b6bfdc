"""Scan preflight (``synthgen scans check``; also the start of ``synthgen render`` and ``--dry-run``).

Each distinct scan (file + the options that change how it loads) is imported once in its own
Blender process (``python -m synthgen.rendering.blender.inspect``), exactly as a render worker
imports it, so a crash on a bad file cannot take the driver down. The report per scan: raw bounding
box and what its units are, the metric size after the size rule, mesh / material / vertex counts,
missing or undecodable textures, untextured materials whose base colour is near black or near
white, rigs and bones, and which ``pose`` joints find a bone.

Errors (the job stops with exit 2 before Ray starts and before ``_meta/`` is written, unless
``--skip-bad-scans`` quarantines the scan): the import fails or the process crashes, the file has no
renderable mesh, or the scan's metric height after its size rule is implausible for a person
(outside [:data:`MIN_HEIGHT_M`, :data:`MAX_HEIGHT_M`], e.g. a file in millimetres given ``unit: m``).

Results are cached as JSON under ``$SYNTHGEN_CACHE_DIR/scan-check/`` (default
``~/.cache/synthgen/scan-check/``, see :func:`synthgen.rendering.hdri_check.cache_dir`), keyed by the
sha256 of the scan file's content, its absolute path (external textures are found relative to it),
the options that change its loading and the pose joints. A crash is never cached; a clean import
failure is (the same bytes fail the same way).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..atomic import write_json_atomic
from ..contract import META_DIR
from ..errors import ConfigError
from .config import UNIT_TO_METRES, Job, ScanAsset
from ..contract import sha256_file
from .hdri_check import cache_dir

log = logging.getLogger("synthgen.render")

CACHE_VERSION = "3"
MIN_HEIGHT_M = 0.05
"""Below this metric height (after the size rule) a scan is refused: no head is 5 cm tall."""
MAX_HEIGHT_M = 4.0
"""Above this a scan is refused: no person is 4 m tall."""
WARN_HEIGHT_M = (0.12, 2.6)
"""Outside this range (but inside the refusal bounds) the size is only a warning."""
TIMEOUT_S = 900.0
"""Longest a scan's inspection process may run."""


def _request(job: Job, asset: ScanAsset) -> dict[str, Any]:
    cfg = job.config
    return {"asset": asset.model_dump(mode="json"),
            "joints": [j.model_dump(mode="json") for j in cfg.pose.joints],
            "rest_pose": cfg.pose.enabled,
            "keep_animation": cfg.pose.enabled and cfg.pose.source == "animation"}


NOT_LOADING = ("id", "weight", "tags", "licence", "attribution")
"""Scan fields that do not change how a scan loads (left out of the dedupe and cache keys)."""


def _loading(req: dict[str, Any]) -> dict[str, Any]:
    """The request without :data:`NOT_LOADING` fields and without the contact sheet's."""
    return {**{k: v for k, v in req.items() if k not in ("sheet", "hdri")},
            "asset": {k: v for k, v in req["asset"].items() if k not in NOT_LOADING}}


def _key(req: dict[str, Any], digest: str) -> str:
    doc = {"v": CACHE_VERSION, "sha256": digest, "req": _loading(req)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _run_inspect(req: dict[str, Any]) -> dict[str, Any]:
    """One Blender process inspecting one scan; returns its result (``ok``, ``report`` or ``error``)."""
    with tempfile.TemporaryDirectory(prefix="synthgen-scan-check-") as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [sys.executable, "-m", "synthgen.rendering.blender.inspect", out]
        try:
            p = subprocess.run(cmd, input=json.dumps(req), capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {"ok": False, "kind": "scan_check_timeout", "crashed": True,
                    "error": f"Blender did not finish importing the scan within {TIMEOUT_S:.0f} s"}
        if os.path.isfile(out):
            with open(out) as fh:
                return json.load(fh)
        tail = [ln for ln in (p.stderr or "").strip().splitlines() if ln.strip()][-5:]
        how = f"killed by signal {-p.returncode}" if p.returncode < 0 else f"exit status {p.returncode}"
        return {"ok": False, "kind": "scan_import_crashed", "crashed": True,
                "error": f"Blender crashed importing the scan ({how})" + (": " + " | ".join(tail) if tail else "")}


def _inspect_cached(req: dict[str, Any], use_cache: bool) -> dict[str, Any]:
    path = req["asset"]["path"]
    t0 = time.perf_counter()
    try:
        digest = sha256_file(path)
    except OSError as exc:
        return {"ok": False, "kind": "scan_unreadable", "error": f"cannot read the file ({exc.strerror or exc})",
                "seconds": 0.0, "cached": False}
    f = cache_dir() / "scan-check" / f"{_key(req, digest)}.json"
    if use_cache and f.is_file() and not req.get("sheet"):
        try:
            res = json.loads(f.read_text())
            return {**res, "cached": True, "seconds": round(time.perf_counter() - t0, 3), "sha256": digest}
        except (OSError, ValueError):
            pass
    res = _run_inspect(req)
    if use_cache and not res.get("crashed"):
        try:
            write_json_atomic(f, res)
        except OSError as exc:
            log.debug("scan check cache not written (%s)", exc)
    return {**res, "cached": False, "seconds": round(time.perf_counter() - t0, 3), "sha256": digest}


def _judge(asset: ScanAsset, res: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(errors, warnings) of one scan's inspection result."""
    if not res.get("ok"):
        return [res.get("error", "unknown failure")], []
    rep = res["report"]
    warnings = list(rep.get("load_warnings", [])) + list(rep.get("material_warnings", []))
    height = rep["extent_m"][2]
    raw = rep.get("raw", {})
    raw_h = (raw.get("extent") or [None] * 3)[2]
    rule = ", ".join(f"{k}: {v}" for k, v in rep["size_rule"].items() if k != "measure")
    what = (f"measured height {height:.4g} m after size {{{rule}}} (the imported file is {raw_h:.4g} "
            f"units tall, in {raw.get('units', 'file units')})")
    if not MIN_HEIGHT_M <= height <= MAX_HEIGHT_M:
        units = [u for u, f in UNIT_TO_METRES.items() if raw_h and 0.15 <= raw_h * f <= 2.5]
        tens = [10.0 ** k for k in range(-4, 5) if raw_h and 0.15 <= raw_h * 10.0 ** k <= 2.5]
        hint = (f"size: {{unit: {units[0]}}} would make it {raw_h * UNIT_TO_METRES[units[0]]:.3g} m; " if units
                else f"size: {{scale: {tens[0]:g}}} would make it {raw_h * tens[0]:.3g} m; " if tens
                else "") + "or give its real height with size: {height_m: ...}"
        return [f"{what}: {'too small' if height < MIN_HEIGHT_M else 'too large'} for a person or head; "
                f"is the unit right? {hint}"], warnings
    if not WARN_HEIGHT_M[0] <= height <= WARN_HEIGHT_M[1]:
        warnings.append(f"{what}: unusual for a person or head; check the size rule")
    return [], warnings


def check_scans(job: Job, skip_bad: bool = False, use_cache: bool = True, workers: int | None = None,
                need_subject: bool = True, sheets: Path | None = None) -> tuple[Job, dict[str, Any]]:
    """Inspect every distinct scan of ``job`` (cached) and judge it.

    Args:
        skip_bad: quarantine scans with errors (they are left out of the returned job, with their
            reason in the report) instead of raising.
        use_cache: read and write the cache (see the module docstring).
        workers: parallel Blender processes (default: min(4, CPUs)).
        need_subject: raise when every subject of the job would be quarantined.
        sheets: write a contact sheet per distinct scan as ``sheets/ID.png`` (front, side, head
            close-up; :mod:`synthgen.rendering.blender.contact_sheet`); those scans are imported
            again even when cached.

    Returns:
        (the job, without quarantined scans; the report ``{"version", "scans": [{"id", "path",
        "sha256", "cached", "seconds", "errors", "warnings", "report"}], "quarantined": [{"id",
        "path", "reason", "error"}], "warnings": ["scan ID: ..."]}``).

    Raises:
        ConfigError: a scan has an error and not ``skip_bad`` (every bad scan is named with its
            cause), or every subject of the job was quarantined.
    """
    reqs = [_request(job, a) for a in job.scans]
    n = workers or min(4, os.cpu_count() or 1)
    uniq: dict[str, dict[str, Any]] = {}
    for r in reqs:
        uniq.setdefault(json.dumps(_loading(r), sort_keys=True), r)
    if sheets is not None and job.hdris:
        Path(sheets).mkdir(parents=True, exist_ok=True)
        for r in uniq.values():
            r.update(sheet=str(Path(sheets).resolve() / f"{r['asset']['id']}.png"), hdri=job.hdris[0].path)
    with cf.ThreadPoolExecutor(max(1, min(n, len(uniq) or 1))) as pool:
        futs = {k: pool.submit(_inspect_cached, r, use_cache) for k, r in uniq.items()}
        results = {k: f.result() for k, f in futs.items()}
    entries, bad, quarantined, flat = [], [], [], []
    for asset, r in zip(job.scans, reqs):
        res = results[json.dumps(_loading(r), sort_keys=True)]
        errors, warnings = _judge(asset, res)
        entries.append({"id": asset.id, "path": asset.path, "sha256": res.get("sha256"), "cached": res["cached"],
                        "seconds": res["seconds"], "errors": errors, "warnings": warnings,
                        "report": res.get("report")})
        flat += [w if w.startswith(f"scan {asset.id}: ") else f"scan {asset.id}: {w}" for w in warnings]
        if errors:
            bad.append(asset)
            quarantined.append({"id": asset.id, "path": asset.path, "reason": res.get("kind", "scan_check_failed")
                                if not res.get("ok") else "implausible_size", "error": errors[0]})
    report = {"version": CACHE_VERSION, "scans": entries, "quarantined": quarantined if skip_bad else [],
              "warnings": flat}
    if bad and not skip_bad:
        lines = [f"  scan {q['id']} ({q['path']}): {q['error']}" for q in quarantined]
        raise ConfigError(f"{job.config_path}: {len(bad)} scan(s) failed the preflight; nothing was rendered:\n"
                          + "\n".join(lines) + "\nfix or remove them, or pass --skip-bad-scans to quarantine "
                          "them and render the other scans")
    if bad:
        ids = {a.id for a in bad}
        job = job.model_copy(update={"scans": [a for a in job.scans if a.id not in ids]})
        if need_subject and not job.scans and not job.config.subjects:
            raise ConfigError(f"{job.config_path}: every scan failed the preflight and the job has no other "
                              "subject:\n" + "\n".join(f"  scan {q['id']}: {q['error']}" for q in quarantined))
    return job, report


def write_scan_report(out: Path, report: dict[str, Any] | None) -> None:
    """``OUT/_meta/scans.json`` (atomic): the preflight report of the run's scans."""
    if report is not None:
        write_json_atomic(Path(out) / META_DIR / "scans.json", report)


def format_report(report: dict[str, Any]) -> str:
    """The preflight report as text, one block per scan (``synthgen scans check``)."""
    lines = []
    for e in report["scans"]:
        rep = e.get("report") or {}
        state = "ERROR" if e["errors"] else ("warnings" if e["warnings"] else "ok")
        lines.append(f"scan {e['id']}: {state}  ({e['path']}; {'cached' if e['cached'] else 'imported'} in "
                     f"{e['seconds']:.1f} s)")
        if rep:
            raw = rep.get("raw", {})
            fmt = lambda v: "[" + ", ".join(f"{x:.4g}" for x in v) + "]"  # noqa: E731
            if raw:
                lines.append(f"  raw bbox {fmt(raw['bbox_min'])} .. {fmt(raw['bbox_max'])} ({raw['units']})")
            rule = {k: v for k, v in rep["size_rule"].items() if k != "measure"}
            lines.append(f"  size rule {rule} -> scale {rep['scale_applied']:.5g}; "
                         f"metric extent x/y/z {fmt(rep['extent_m'])} m")
            m, o = rep.get("measured") or {}, rep.get("orientation") or {}
            if m:
                lines.append(f"  orientation up {o.get('up_axis')} forward {o.get('forward_axis')}; measured "
                             f"{m['rule']} ({', '.join(m['objects'][:5])}; {m['vertices']} vertices): "
                             f"{m['height_m']:.4g} m tall, whole scan {m['whole_height_m']:.4g} m"
                             + (f"; excluded {m['excluded_objects']}" if m.get("excluded_objects") else ""))
            n_mat = len(rep["materials"])
            lines.append(f"  {rep['meshes']} mesh(es), {rep['vertices']} vertices, {rep['materials_in_file']} "
                         f"material(s) in the file, {n_mat} in use")
            for r in rep["rigs"]:
                lines.append(f"  rig {r['name']}: {r['bones']} bones")
            joints = rep.get("pose_joints") or {}
            if rep["rigs"] and joints:
                lines.append("  pose joints: " + ", ".join(f"{k}={v or 'MISSING'}" for k, v in joints.items()))
            sheet = rep.get("contact_sheet") or {}
            if sheet:
                lines.append(f"  contact sheet: {sheet.get('path') or 'not written: ' + str(sheet.get('error'))}")
        lines += [f"  error: {x}" for x in e["errors"]] + [f"  warning: {x}" for x in e["warnings"]]
    for q in report.get("quarantined", []):
        lines.append(f"quarantined scan {q['id']}: {q['reason']}: {q['error']}")
    return "\n".join(lines)


def scan_summary(report: dict[str, Any] | None) -> dict[str, Any]:
    """The run summary's ``scan_warnings`` (``scan ID: ...`` lines) and ``scans_quarantined``."""
    if report is None:
        return {"scan_warnings": [], "scans_quarantined": []}
    return {"scan_warnings": list(report["warnings"]), "scans_quarantined": list(report["quarantined"])}
