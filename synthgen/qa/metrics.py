"""Per-sample QA metrics and gate checks: pure functions of one decoded sample's record and arrays.

Metric definitions (all per sample):

- ``focal_35mm``: 35 mm-equivalent focal length, 36 mm · fx / W (fx from K in pixels, W the image
  width in pixels); comparable between renders and real cameras.
- ``fov_x_deg``, ``fov_y_deg``: 2·atan(W / (2·fx)), 2·atan(H / (2·fy)), degrees, from K.
- ``focal_mm``: ``camera.focal_length_mm`` of the record, when given.
- ``yaw_deg``, ``pitch_deg``, ``roll_deg``, ``camera_distance_m``: from ``render.params`` /
  ``render.camera`` (synthetic) or ``capture`` (real) when the record has them.
- ``subject_depth_m``: median valid depth over subject pixels (mask >= 0.5), metres.
- ``mask_fraction``: mean of the mask (subject coverage).
- ``depth_min_m``, ``depth_max_m``: min / max of valid depth (finite, > 0), metres.
- ``invalid_fraction``: fraction of depth pixels that are 0 or non-finite.
- ``exposure_ev``: log2 of the mean linear Rec. 709 luminance (0.2126 R + 0.7152 G + 0.0722 B).
- ``brightness``: mean sRGB-encoded luminance (clipped to [0, 1]) — what a viewer sees.
- ``clipped_fraction``: see :class:`synthgen.qa.gates.ExposureNotClipped`.

Every metric has fixed histogram bins (:data:`METRICS`); the per-pixel histogram of valid depth
uses :data:`PIXEL_DEPTH_EDGES` (log-spaced). :func:`measure` also evaluates the per-sample gates
(``depth_*``, ``mask_*``, ``exposure_not_clipped``, ``camera_consistent``) against the thresholds
of :class:`synthgen.qa.gates.Gates`; accumulating over samples is :mod:`synthgen.qa.accumulators`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..colour import REC709_LUMA as LUMA
from ..colour import srgb_encode
from .gates import Gates
from .samples import Decoded

Check = tuple[bool, float, str]
"""A per-sample gate check: ``(failed, score, observed text)``; higher score = worse."""


@dataclass(frozen=True)
class Metric:
    """A per-sample metric: its name, plot label and fixed histogram bin edges (log-spaced: ``log``)."""
    name: str
    label: str
    edges: np.ndarray
    log: bool = False


def _lin(lo, hi, n):
    return np.linspace(lo, hi, n + 1)


def _log(lo, hi, n):
    return np.logspace(math.log10(lo), math.log10(hi), n + 1)


METRICS: list[Metric] = [
    Metric("focal_35mm", "focal length, 35 mm equivalent (mm)", _lin(0, 200, 80)),
    Metric("focal_mm", "focal length in record (mm)", _lin(0, 200, 80)),
    Metric("fov_x_deg", "horizontal field of view (deg)", _lin(0, 180, 90)),
    Metric("fov_y_deg", "vertical field of view (deg)", _lin(0, 180, 90)),
    Metric("yaw_deg", "camera yaw (deg)", _lin(-180, 180, 72)),
    Metric("pitch_deg", "camera pitch (deg)", _lin(-90, 90, 72)),
    Metric("roll_deg", "camera roll (deg)", _lin(-180, 180, 72)),
    Metric("camera_distance_m", "camera distance to target (m)", _lin(0, 5, 100)),
    Metric("subject_depth_m", "median subject depth (m)", _log(0.01, 1000, 100), log=True),
    Metric("mask_fraction", "subject coverage (mask mean)", _lin(0, 1, 50)),
    Metric("depth_min_m", "per-sample min valid depth (m)", _log(0.01, 1000, 100), log=True),
    Metric("depth_max_m", "per-sample max valid depth (m)", _log(0.01, 1000, 100), log=True),
    Metric("invalid_fraction", "invalid depth pixel fraction", _lin(0, 1, 50)),
    Metric("exposure_ev", "exposure: log2 mean linear luminance (EV)", _lin(-16, 8, 96)),
    Metric("brightness", "brightness: mean sRGB luminance", _lin(0, 1, 50)),
    Metric("clipped_fraction", "clipped pixel fraction (subject)", _lin(0, 1, 50)),
]
METRIC_BY_NAME = {m.name: m for m in METRICS}
PIXEL_DEPTH_EDGES = _log(0.01, 1000, 150)
_PD_LO, _PD_STEP = math.log10(0.01), (math.log10(1000) - math.log10(0.01)) / 150


def finite_number(x) -> float | None:
    """``x`` as a finite float, or None."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def field_at(d: Any, *path) -> Any:
    """``d[path[0]][path[1]]...``, or None where a level is missing or not a dict."""
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def record_fields(rec: dict | None) -> dict[str, Any]:
    """Categorical fields of a record: source, subject, sensor, hdri, scan (None when absent)."""
    rec = rec if isinstance(rec, dict) else {}
    source = rec.get("source") if rec.get("source") in ("synthetic", "real") else "unknown"
    sensor = field_at(rec, "capture", "sensor")
    if isinstance(sensor, dict):
        sensor = sensor.get("name") or sensor.get("model") or sensor.get("id")
    if sensor is None and source == "synthetic":
        sensor = "render:" + str(field_at(rec, "render", "settings", "engine") or "blender")
    hdri = field_at(rec, "render", "hdri", "id") or field_at(rec, "render", "params", "hdri_id")
    scan = field_at(rec, "render", "scan", "id") or field_at(rec, "render", "params", "scan_id")
    subject = rec.get("subject_id")
    return {"source": source, "subject": str(subject) if subject is not None else None,
            "sensor": str(sensor) if sensor is not None else None,
            "hdri": str(hdri) if hdri is not None else None,
            "scan": str(scan) if scan is not None else None}


RECORD_METRICS = (("yaw_deg", [("render", "params", "yaw_deg"), ("capture", "yaw_deg")]),
                  ("pitch_deg", [("render", "params", "pitch_deg"), ("capture", "pitch_deg")]),
                  ("roll_deg", [("render", "params", "roll_deg"), ("capture", "roll_deg")]),
                  ("camera_distance_m", [("render", "camera", "distance_m"), ("render", "params", "distance_m"),
                                         ("capture", "distance_m")]),
                  ("focal_mm", [("camera", "focal_length_mm")]))
"""Metrics read from the record: name -> the record paths tried in order (the first finite number wins)."""


def measure(d: Decoded, gates: Gates) -> tuple[dict[str, float | None], dict[str, Check], np.ndarray | None]:
    """Measure one decoded sample.

    Returns:
        ``(metrics, checks, pixel_depth_counts)``: metrics name -> value (None when not
        available); checks gate -> ``(failed, score, observed text)`` for the per-sample gates that
        apply (higher score = worse); per-pixel depth histogram counts on :data:`PIXEL_DEPTH_EDGES`
        (None without arrays).
    """
    rec = d.record if isinstance(d.record, dict) else {}
    m: dict[str, float | None] = {k.name: None for k in METRICS}
    m.update(record_metrics(rec))
    checks: dict[str, Check] = {}
    if d.depth is None:
        return m, checks, None
    mask = np.nan_to_num(d.mask, nan=0.0, posinf=1.0, neginf=0.0)
    rgb = np.nan_to_num(d.rgb, nan=0.0, posinf=65504.0, neginf=0.0)
    subj = mask >= 0.5
    depth_m, depth_checks, pix = depth_metrics(d.depth, subj, field_at(rec, "depth", "metric") is not False, gates)
    for metrics, found in ((depth_m, depth_checks), mask_metrics(mask, gates, rec),
                           exposure_metrics(rgb, subj, gates)):
        m.update(metrics)
        checks.update(found)
    # camera (not applicable without a record: members_complete / records_valid report that)
    if d.record is not None:
        H, W = d.depth.shape
        metrics, checks["camera_consistent"] = camera_metrics(rec, W, H, gates)
        m.update(metrics)
    return m, checks, pix


def record_metrics(rec: dict[str, Any]) -> dict[str, float]:
    """The :data:`RECORD_METRICS` the record has."""
    m = {}
    for name, paths in RECORD_METRICS:
        for p in paths:
            v = finite_number(field_at(rec, *p))
            if v is not None:
                m[name] = v
                break
    return m


def depth_metrics(depth: np.ndarray, subj: np.ndarray, metric: bool, g: Gates
                  ) -> tuple[dict[str, float], dict[str, Check], np.ndarray | None]:
    """Depth metrics and the ``depth_finite``, ``depth_has_valid_pixels`` and (for metric depth,
    ``metric``) ``depth_in_range`` checks of (H, W) depth in metres with subject pixels ``subj``;
    also the per-pixel histogram counts of valid depth (None when no pixel is valid)."""
    m: dict[str, float] = {}
    checks: dict[str, Check] = {}
    n = depth.size
    finite = np.isfinite(depth)
    nonfinite = int(n - np.count_nonzero(finite))
    valid = finite & (depth > 0)
    n_valid = int(np.count_nonzero(valid))
    vals = depth[valid]
    m["invalid_fraction"] = 1.0 - n_valid / n
    frac_nf = nonfinite / n
    checks["depth_finite"] = (frac_nf > g.depth_finite.max_nonfinite_fraction, frac_nf,
                              f"{nonfinite} non-finite depth pixels ({frac_nf:.2%})")
    vf = n_valid / n
    checks["depth_has_valid_pixels"] = (vf < g.depth_has_valid_pixels.min_valid_fraction, 1.0 - vf,
                                        f"valid depth fraction {vf:.4f}")
    if not n_valid:
        return m, checks, None
    m["depth_min_m"], m["depth_max_m"] = float(vals.min()), float(vals.max())
    sv = depth[valid & subj]
    if sv.size:
        m["subject_depth_m"] = float(np.median(sv))
    idx = np.floor((np.log10(vals) - _PD_LO) / _PD_STEP).astype(np.int64)
    pix = np.bincount(np.clip(idx, 0, len(PIXEL_DEPTH_EDGES) - 2), minlength=len(PIXEL_DEPTH_EDGES) - 1)
    if metric:
        r = g.depth_in_range
        oor = float(np.count_nonzero((vals < r.min_m) | (vals > r.max_m))) / n_valid
        checks["depth_in_range"] = (oor > r.max_out_of_range_fraction, oor,
                                    f"{oor:.2%} of valid depth outside [{r.min_m}, {r.max_m}] m "
                                    f"(min {m['depth_min_m']:.3g}, max {m['depth_max_m']:.3g} m)")
    return m, checks, pix


def mask_metrics(mask: np.ndarray, g: Gates, rec: dict[str, Any] | None = None
                 ) -> tuple[dict[str, float], dict[str, Check]]:
    """Subject coverage and the ``mask_not_empty`` / ``mask_not_full`` checks of an (H, W) mask, and
    ``mask_without_person`` when the record ``rec`` states person presence (see
    :class:`synthgen.qa.gates.MaskWithoutPerson`); ``mask_not_empty`` is skipped for ``mask.kind: "none"``."""
    cov = float(mask.mean())
    kind = field_at(rec or {}, "mask", "kind")
    checks: dict[str, Check] = {"mask_not_full": (cov >= g.mask_not_full.max_coverage, cov, f"coverage {cov:.4f}")}
    if kind != "none":
        checks["mask_not_empty"] = (cov <= g.mask_not_empty.min_coverage, 1.0 - cov, f"coverage {cov:.4f}")
    present = finite_number(field_at(rec or {}, "mask", "person_present"))
    if kind == "none" or present is not None:
        gp = g.mask_without_person
        no_person = kind == "none" or (present is not None and present < gp.min_person_confidence)
        failed = no_person and cov > gp.max_coverage
        why = "mask.kind none" if kind == "none" else f"person_present {present:.2f}"
        checks["mask_without_person"] = (failed, cov if no_person else 0.0,
                                         f"coverage {cov:.4f} with {why}" if no_person else
                                         f"person present ({why})")
    return {"mask_fraction": cov}, checks


def exposure_metrics(rgb: np.ndarray, subj: np.ndarray, g: Gates) -> tuple[dict[str, float], dict[str, Check]]:
    """Exposure, brightness and clipping of (H, W, 3) linear RGB, and the ``exposure_not_clipped``
    check (over the subject pixels ``subj`` when they cover at least 1% of the image, else all)."""
    n = subj.size
    Y = rgb @ LUMA
    mean_y = float(Y.mean())
    m = {"exposure_ev": math.log2(max(mean_y, 2.0 ** -20)), "brightness": float(srgb_encode(Y).mean())}
    mx = rgb.max(axis=-1)
    region = subj if np.count_nonzero(subj) >= 0.01 * n else np.ones_like(subj)
    e = g.exposure_not_clipped
    clipped = (mx >= e.clip_high) | (mx <= e.clip_low)
    cf = float(np.count_nonzero(clipped & region)) / max(int(np.count_nonzero(region)), 1)
    m["clipped_fraction"] = cf
    return m, {"exposure_not_clipped": (cf > e.max_clipped_fraction, cf, f"clipped fraction {cf:.2%}")}


def camera_metrics(rec: dict[str, Any], W: int, H: int, g: Gates) -> tuple[dict[str, float], Check]:
    """``focal_35mm``, ``fov_x_deg``, ``fov_y_deg`` from the record's K, and the ``camera_consistent``
    check of the record against a W x H image (size, principal point, fields of view, focal length)."""
    m: dict[str, float] = {}
    K = field_at(rec, "camera", "K")
    try:
        K = np.asarray(K, float)
        ok_k = K.shape == (3, 3) and np.all(np.isfinite(K)) and K[0, 0] > 0 and K[1, 1] > 0
    except (TypeError, ValueError):
        ok_k = False
    cam_problems: list[str] = []
    score = 0.0
    img = rec.get("image") if isinstance(rec.get("image"), dict) else {}
    rw, rh = img.get("width"), img.get("height")
    if (rw, rh) != (W, H):
        cam_problems.append(f"record image {rw}x{rh} != EXR {W}x{H}")
        score += 1.0
    if ok_k:
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        m["focal_35mm"] = 36.0 * fx / W
        m["fov_x_deg"] = math.degrees(2 * math.atan(W / (2 * fx)))
        m["fov_y_deg"] = math.degrees(2 * math.atan(H / (2 * fy)))
        c = g.camera_consistent
        mg = c.principal_point_margin
        if not (-mg * W <= cx <= W - 1 + mg * W and -mg * H <= cy <= H - 1 + mg * H):
            cam_problems.append(f"principal point ({cx:.1f}, {cy:.1f}) outside the {W}x{H} image "
                                f"(margin {mg:.0%})")
            score += 1.0 + abs(cx - (W - 1) / 2) / W + abs(cy - (H - 1) / 2) / H
        for key, val in (("fov_x_deg", m["fov_x_deg"]), ("fov_y_deg", m["fov_y_deg"])):
            rv = finite_number(field_at(rec, "camera", key))
            if rv is not None and abs(rv - val) > c.fov_tolerance_deg:
                cam_problems.append(f"{key} {rv:.2f} != {val:.2f} from K")
                score += 1.0
        f_mm = finite_number(field_at(rec, "camera", "focal_length_mm"))
        sw = finite_number(field_at(rec, "camera", "sensor_width_mm"))
        fit = field_at(rec, "camera", "sensor_fit")
        if f_mm and sw and fit in (None, "horizontal", "HORIZONTAL"):
            fx_exp = f_mm / sw * W
            if abs(fx_exp - fx) / fx > c.focal_rel_tolerance:
                cam_problems.append(f"focal_length_mm/sensor_width_mm*W = {fx_exp:.1f} px != fx {fx:.1f} px")
                score += 1.0
    else:
        cam_problems.append("no valid K")
        score += 1.0
    return m, (bool(cam_problems), score, "; ".join(cam_problems) if cam_problems else "consistent")
