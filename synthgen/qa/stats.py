"""Per-sample measurements and streaming, bounded-memory accumulation for QA reports.

One pass over the samples updates:

- fixed-bin histograms (per source: synthetic / real) of every per-sample metric in
  :data:`METRICS`, plus a per-pixel histogram of valid depth on log-spaced bins, with running
  count / sum / min / max — memory independent of the number of samples;
- counters of categorical fields (source, split, subject, sensor, HDRI, scan) — one entry per
  distinct value;
- per gate: element and unexpected counts, the first ``max_listed`` offenders, and a min-heap of
  the worst ``worst_n`` samples by a per-gate score (with a small contact-sheet thumbnail);
- a reservoir sample (Vitter's algorithm R) of ``sample_n`` thumbnails for the random contact sheet;
- for the set-level gates: a 16-byte array digest per distinct content and the first split of
  every key (O(number of samples) small entries, no arrays — about 150 bytes per sample).

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

Depth sensor (simulated vs real, :class:`DepthSensorTally`): for synthetic samples with a
``depth_sensor.exr`` member (the simulated sensor depth) and for real samples with metric depth (their
depth *is* a sensor's), per group (synthetic / real by capture sensor): hole fraction inside the subject
mask (mask >= 0.5) and overall (synthetic: over pixels with a clean depth; real: over all pixels),
and the noise versus depth by :func:`synthgen.depth_sensor.noise_moments` (horizontal second
differences of smooth valid pixels; 0.25 m bins) — the estimators the sensor model was fitted with.
"""

from __future__ import annotations

import heapq
import io
import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..colour import REC709_LUMA as LUMA
from ..colour import colourise_depth, srgb_encode
from .gates import Gates, gate_names
from .sources import Decoded

SOURCES = ("synthetic", "real", "unknown")


@dataclass(frozen=True)
class Metric:
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

PER_SAMPLE_GATES = ("depth_finite", "depth_has_valid_pixels", "depth_in_range", "mask_not_empty",
                    "mask_not_full", "exposure_not_clipped", "camera_consistent")
SET_GATES = ("no_exact_duplicates", "keys_unique", "keys_disjoint_across_splits",
             "subjects_disjoint_across_splits")


# --------------------------------------------------------------------------------------------
# per-sample measurement

def _num(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _get(d: Any, *path) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def record_fields(rec: dict | None) -> dict[str, Any]:
    """Categorical fields of a record: source, subject, sensor, hdri, scan (None when absent)."""
    rec = rec if isinstance(rec, dict) else {}
    source = rec.get("source") if rec.get("source") in ("synthetic", "real") else "unknown"
    sensor = _get(rec, "capture", "sensor")
    if isinstance(sensor, dict):
        sensor = sensor.get("name") or sensor.get("model") or sensor.get("id")
    if sensor is None and source == "synthetic":
        sensor = "render:" + str(_get(rec, "render", "settings", "engine") or "blender")
    hdri = _get(rec, "render", "hdri", "id") or _get(rec, "render", "params", "hdri_id")
    scan = _get(rec, "render", "scan", "id") or _get(rec, "render", "params", "scan_id")
    subject = rec.get("subject_id")
    return {"source": source, "subject": str(subject) if subject is not None else None,
            "sensor": str(sensor) if sensor is not None else None,
            "hdri": str(hdri) if hdri is not None else None,
            "scan": str(scan) if scan is not None else None}


def measure(d: Decoded, gates: Gates) -> tuple[dict[str, float | None], dict[str, tuple[bool, float, str]],
                                                np.ndarray | None]:
    """Measure one decoded sample.

    Returns:
        ``(metrics, checks, pixel_depth_counts)``: metrics name -> value (None when not
        available); checks gate -> ``(failed, score, observed text)`` for the per-sample gates that
        apply (higher score = worse); per-pixel depth histogram counts on :data:`PIXEL_DEPTH_EDGES`
        (None without arrays).
    """
    rec = d.record if isinstance(d.record, dict) else {}
    m: dict[str, float | None] = {k.name: None for k in METRICS}
    checks: dict[str, tuple[bool, float, str]] = {}
    for name, paths in (("yaw_deg", [("render", "params", "yaw_deg"), ("capture", "yaw_deg")]),
                        ("pitch_deg", [("render", "params", "pitch_deg"), ("capture", "pitch_deg")]),
                        ("roll_deg", [("render", "params", "roll_deg"), ("capture", "roll_deg")]),
                        ("camera_distance_m", [("render", "camera", "distance_m"),
                                               ("render", "params", "distance_m"), ("capture", "distance_m")]),
                        ("focal_mm", [("camera", "focal_length_mm")])):
        for p in paths:
            v = _num(_get(rec, *p))
            if v is not None:
                m[name] = v
                break
    pix = None
    if d.depth is None:
        return m, checks, pix

    g = gates
    H, W = d.depth.shape
    depth, mask = d.depth, np.nan_to_num(d.mask, nan=0.0, posinf=1.0, neginf=0.0)
    rgb = np.nan_to_num(d.rgb, nan=0.0, posinf=65504.0, neginf=0.0)
    n = depth.size

    # depth
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
    subj = mask >= 0.5
    if n_valid:
        m["depth_min_m"], m["depth_max_m"] = float(vals.min()), float(vals.max())
        sv = depth[valid & subj]
        if sv.size:
            m["subject_depth_m"] = float(np.median(sv))
        idx = np.floor((np.log10(vals) - _PD_LO) / _PD_STEP).astype(np.int64)
        pix = np.bincount(np.clip(idx, 0, len(PIXEL_DEPTH_EDGES) - 2), minlength=len(PIXEL_DEPTH_EDGES) - 1)
        if _get(rec, "depth", "metric") is not False:
            r = g.depth_in_range
            oor = float(np.count_nonzero((vals < r.min_m) | (vals > r.max_m))) / n_valid
            checks["depth_in_range"] = (oor > r.max_out_of_range_fraction, oor,
                                        f"{oor:.2%} of valid depth outside [{r.min_m}, {r.max_m}] m "
                                        f"(min {m['depth_min_m']:.3g}, max {m['depth_max_m']:.3g} m)")

    # mask
    cov = float(mask.mean())
    m["mask_fraction"] = cov
    checks["mask_not_empty"] = (cov <= g.mask_not_empty.min_coverage, 1.0 - cov, f"coverage {cov:.4f}")
    checks["mask_not_full"] = (cov >= g.mask_not_full.max_coverage, cov, f"coverage {cov:.4f}")

    # exposure
    Y = rgb @ LUMA
    mean_y = float(Y.mean())
    m["exposure_ev"] = math.log2(max(mean_y, 2.0 ** -20))
    m["brightness"] = float(srgb_encode(Y).mean())
    mx = rgb.max(axis=-1)
    region = subj if np.count_nonzero(subj) >= 0.01 * n else np.ones_like(subj)
    e = g.exposure_not_clipped
    clipped = (mx >= e.clip_high) | (mx <= e.clip_low)
    cf = float(np.count_nonzero(clipped & region)) / max(int(np.count_nonzero(region)), 1)
    m["clipped_fraction"] = cf
    checks["exposure_not_clipped"] = (cf > e.max_clipped_fraction, cf, f"clipped fraction {cf:.2%}")

    # camera (not applicable without a record: members_complete / records_valid report that)
    if d.record is None:
        return m, checks, pix
    K = _get(rec, "camera", "K")
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
            rv = _num(_get(rec, "camera", key))
            if rv is not None and abs(rv - val) > c.fov_tolerance_deg:
                cam_problems.append(f"{key} {rv:.2f} != {val:.2f} from K")
                score += 1.0
        f_mm, sw = _num(_get(rec, "camera", "focal_length_mm")), _num(_get(rec, "camera", "sensor_width_mm"))
        fit = _get(rec, "camera", "sensor_fit")
        if f_mm and sw and fit in (None, "horizontal", "HORIZONTAL"):
            fx_exp = f_mm / sw * W
            if abs(fx_exp - fx) / fx > c.focal_rel_tolerance:
                cam_problems.append(f"focal_length_mm/sensor_width_mm*W = {fx_exp:.1f} px != fx {fx:.1f} px")
                score += 1.0
    else:
        cam_problems.append("no valid K")
        score += 1.0
    checks["camera_consistent"] = (bool(cam_problems), score,
                                   "; ".join(cam_problems) if cam_problems else "consistent")
    return m, checks, pix


# --------------------------------------------------------------------------------------------
# thumbnails

def contact_tile(rgb: np.ndarray, depth: np.ndarray, mask: np.ndarray, height: int = 96) -> bytes:
    """PNG bytes of a contact-sheet tile: sRGB colour | colourised depth | mask overlay.

    Colour uses the default view transform (clip to [0, 1], sRGB encode); depth uses turbo between
    the 1st and 99th percentile of valid depth, black = invalid (0), magenta = NaN/inf; the overlay
    tints subject pixels green in proportion to the mask. Panels are resized to ``height`` pixels
    (nearest-neighbour when enlarging, so tiny images stay crisp).
    """
    from PIL import Image

    rgb = np.nan_to_num(rgb, nan=0.0, posinf=1.0, neginf=0.0)
    c = (srgb_encode(rgb) * 255 + 0.5).astype(np.uint8)
    nonfinite = ~np.isfinite(depth)
    dep = colourise_depth(np.where(nonfinite, 0.0, depth))
    dep[nonfinite] = (255, 0, 255)
    mk = np.clip(np.nan_to_num(mask), 0, 1)[..., None] * 0.6
    ov = (c * (1 - mk) + np.array([40, 230, 90], np.float32) * mk + 0.5).astype(np.uint8)
    gap = np.full((c.shape[0], max(1, c.shape[1] // 32), 3), 255, np.uint8)
    strip = np.concatenate([c, gap, dep, gap, ov], axis=1)
    im = Image.fromarray(strip)
    h, w = strip.shape[:2]
    new_w = max(1, round(w * height / h))
    im = im.resize((new_w, height), Image.NEAREST if height >= h else Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# depth sensor: simulated vs real

HOLE_EDGES = _lin(0, 1, 50)


class _SensorGroup:
    __slots__ = ("source", "sensor", "samples", "holes_all", "pixels_all", "holes_subject", "pixels_subject",
                 "hist_subject", "hist_all", "noise_sq", "noise_n")

    def __init__(self, source: str, sensor: str):
        from ..rendering.sensor_fit import NOISE_EDGES_M

        self.source, self.sensor = source, sensor
        self.samples = 0
        self.holes_all = self.pixels_all = self.holes_subject = self.pixels_subject = 0
        self.hist_subject = np.zeros(len(HOLE_EDGES) - 1, np.int64)
        self.hist_all = np.zeros(len(HOLE_EDGES) - 1, np.int64)
        self.noise_sq = np.zeros(len(NOISE_EDGES_M) - 1)
        self.noise_n = np.zeros(len(NOISE_EDGES_M) - 1, np.int64)


class DepthSensorTally:
    """Streaming depth-sensor statistics (bounded memory: fixed bins per group).

    Groups: ``("synthetic", "simulated")`` for ``depth_sensor.exr`` members and ``("real", SENSOR)``
    for real samples with metric depth (``SENSOR`` = the record's capture sensor, else ``"unknown"``);
    at most ``max_groups`` real sensors, the rest pooled as ``"other"``. Also counts the sensor-model
    parameter sets of the synthetic records (``render.depth_sensor.params``).
    """

    def __init__(self, max_groups: int = 8):
        self.groups: dict[tuple[str, str], _SensorGroup] = {}
        self.max_groups = max_groups
        self.params: Counter = Counter()
        self.unusable: list[str] = []
        self.n_unusable = 0

    def add(self, d: Decoded, fields: dict[str, Any]) -> None:
        from ..rendering.sensor_fit import noise_moments

        if d.depth is None:
            return
        rec = d.record if isinstance(d.record, dict) else {}
        if fields["source"] == "synthetic":
            if d.sensor_depth is None:
                if d.sensor_problem:
                    self.n_unusable += 1
                    if len(self.unusable) < 20:
                        self.unusable.append(f"{d.raw.location}: {d.raw.key}.depth_sensor.exr: {d.sensor_problem}")
                return
            key = ("synthetic", "simulated")
            z = d.sensor_depth
            base = np.isfinite(d.depth) & (d.depth > 0)  # surfaces the simulated sensor could see
            p = _get(rec, "render", "depth_sensor", "params")
            if isinstance(p, dict) and len(self.params) < 50:
                self.params[tuple(sorted((k, v) for k, v in p.items() if isinstance(v, (int, float))))] += 1
        elif fields["source"] == "real" and _get(rec, "depth", "metric") is not False:
            sensor = fields["sensor"] or "unknown"
            if ("real", sensor) not in self.groups and sum(1 for g in self.groups if g[0] == "real") >= self.max_groups:
                sensor = "other"
            key = ("real", sensor)
            z = d.depth
            base = np.ones(z.shape, bool)
        else:
            return
        g = self.groups.get(key)
        if g is None:
            g = self.groups[key] = _SensorGroup(*key)
        hole = ~(np.isfinite(z) & (z > 0))
        subj = np.nan_to_num(d.mask, nan=0.0) >= 0.5
        g.samples += 1
        n_all, h_all = int(base.sum()), int((hole & base).sum())
        n_sub, h_sub = int(subj.sum()), int((hole & subj).sum())
        g.pixels_all += n_all
        g.holes_all += h_all
        g.pixels_subject += n_sub
        g.holes_subject += h_sub
        for hist, h, n in ((g.hist_all, h_all, n_all), (g.hist_subject, h_sub, n_sub)):
            if n:
                hist[min(int(h / n * (len(HOLE_EDGES) - 1)), len(hist) - 1)] += 1
        sq, cnt = noise_moments(np.where(hole, 0.0, z))
        g.noise_sq += sq
        g.noise_n += cnt

    def result(self, min_count: int = 200) -> dict[str, Any]:
        """JSON-able summary: ``groups`` (per group: samples, hole fractions, per-sample hole fraction
        histograms, noise-vs-depth bins ``[{"z_m", "sigma_m", "pixels"}]`` with at least ``min_count``
        pixels, the ``sigma = a + b z²`` fit through them), ``model`` (the most common synthetic
        sensor parameters) and the unusable ``depth_sensor.exr`` members."""
        from ..rendering.sensor_fit import NOISE_EDGES_M, fit_sigma, sigma_from_moments

        groups = []
        for (src, sensor), g in sorted(self.groups.items(), key=lambda kv: (kv[0][0] != "synthetic", kv[0])):
            bins = sigma_from_moments(g.noise_sq, g.noise_n, NOISE_EDGES_M, min_count)
            fit = None
            if len(bins) >= 2:
                a, b = fit_sigma(bins)
                fit = {"sigma_a_m": a, "sigma_b_per_m": b}
            groups.append({
                "source": src, "sensor": sensor, "samples": g.samples,
                "hole_fraction_all": g.holes_all / g.pixels_all if g.pixels_all else None,
                "hole_fraction_all_over": "pixels with a clean depth" if src == "synthetic" else "all pixels",
                "hole_fraction_subject": g.holes_subject / g.pixels_subject if g.pixels_subject else None,
                "subject_pixels": g.pixels_subject,
                "per_sample_hole_fraction": {"bin_edges": [float(x) for x in HOLE_EDGES],
                                             "subject": g.hist_subject.tolist(), "all": g.hist_all.tolist()},
                "noise_vs_depth": [{"z_m": z, "sigma_m": s, "pixels": n} for z, s, n in bins],
                "noise_fit": fit,
            })
        model = None
        if self.params:
            p, n = self.params.most_common(1)[0]
            model = {**dict(p), "samples": n, "distinct_parameter_sets": len(self.params)}
        return {"groups": groups, "model": model, "unusable_members": self.unusable,
                "unusable_count": self.n_unusable}


# --------------------------------------------------------------------------------------------
# accumulation

class _Hist:
    __slots__ = ("counts", "n", "sum", "min", "max")

    def __init__(self, nbins: int):
        self.counts = np.zeros(nbins, np.int64)
        self.n, self.sum, self.min, self.max = 0, 0.0, math.inf, -math.inf


@dataclass
class Tile:
    """A contact-sheet entry: where the sample is, why it is shown, and its PNG thumbnail."""
    key: str
    location: str
    split: str
    source: str
    subject: str | None
    score: float
    observed: str
    failed: bool
    png: bytes


class _GateTally:
    def __init__(self, worst_n: int, max_listed: int):
        self.element = 0
        self.unexpected = 0
        self.listed: list[dict[str, Any]] = []
        self.heap: list[tuple[float, int, Tile]] = []
        self.worst_n, self.max_listed = worst_n, max_listed
        self.observed: dict[str, Any] = {}

    def list(self, entry: dict[str, Any]):
        if len(self.listed) < self.max_listed:
            self.listed.append(entry)


class QAAccumulator:
    """Streaming QA statistics. Call :meth:`add` once per decoded sample occurrence, then :meth:`result`.

    Args:
        gates: thresholds.
        sample_n: size of the random contact sheet (reservoir).
        worst_n: tiles kept per gate.
        max_listed: offenders listed per gate in the JSON report.
        seed: seed of the reservoir's random generator.
        tile_height: contact-sheet tile height in pixels.
    """

    def __init__(self, gates: Gates, sample_n: int = 24, worst_n: int = 8, max_listed: int = 100,
                 seed: int = 0, tile_height: int = 96):
        self.gates = gates
        self.sample_n, self.worst_n, self.tile_height = sample_n, worst_n, tile_height
        self.rng = random.Random(seed)
        self.seq = 0
        self.n_occurrences = 0
        self.n_decoded = 0
        self.counts: dict[str, Counter] = {k: Counter() for k in
                                           ("source", "split_source", "subject", "sensor", "hdri", "scan", "location")}
        self.hists: dict[str, dict[str, _Hist]] = {m.name: {} for m in METRICS}
        self.pixel_depth: dict[str, np.ndarray] = {}
        self.tally = {g: _GateTally(worst_n, max_listed) for g in gate_names()}
        self.reservoir: list[Tile] = []
        self.n_reservoir_seen = 0
        self._key_first: dict[str, str] = {}
        self._key_splits: dict[str, Counter] = {}
        self._hash_first: dict[bytes, str] = {}
        self._hash_groups: dict[bytes, set] = {}
        self._subject_splits: dict[str, Counter] = {}
        self.sensor = DepthSensorTally()

    # -- helpers
    def _tile(self, d: Decoded, fields, score: float, observed: str, failed: bool) -> Tile | None:
        if d.depth is None:
            return None
        return Tile(d.raw.key, d.raw.location, d.raw.split, fields["source"], fields["subject"], float(score),
                    observed, failed, contact_tile(d.rgb, d.depth, d.mask, self.tile_height))

    def _offer_worst(self, gate: str, d: Decoded, fields, score: float, observed: str, failed: bool):
        t = self.tally[gate]
        if self.worst_n <= 0 or score <= 0:  # score 0: nothing wrong to show
            return
        if len(t.heap) < self.worst_n or score > t.heap[0][0]:
            tile = self._tile(d, fields, score, observed, failed)
            if tile is None:
                return
            self.seq += 1
            item = (score, self.seq, tile)
            if len(t.heap) < self.worst_n:
                heapq.heappush(t.heap, item)
            else:
                heapq.heapreplace(t.heap, item)

    def _unexpected(self, gate: str, d: Decoded, observed: str, count: int = 1):
        t = self.tally[gate]
        t.unexpected += count
        t.list({"location": d.raw.location, "split": d.raw.split, "key": d.raw.key, "observed": observed})

    # -- main entry
    def add(self, d: Decoded) -> None:
        """Account for one sample occurrence (decoded or not)."""
        self.n_occurrences += 1
        raw = d.raw
        fields = record_fields(d.record)
        src = fields["source"]
        c = self.counts
        c["source"][src] += 1
        c["split_source"][(raw.split, src)] += 1
        c["location"][raw.location] += 1
        for f in ("subject", "sensor", "hdri", "scan"):
            if fields[f] is not None:
                c[f][(fields[f], src)] += 1

        # records / members gates: every occurrence
        for gate in ("records_valid", "members_complete"):
            self.tally[gate].element += 1
            msgs = [msg for g, msg in d.problems if g == gate]
            if msgs:
                self._unexpected(gate, d, "; ".join(msgs))

        # per-sample measurements
        metrics, checks, pix = measure(d, self.gates)
        for name, v in metrics.items():
            if v is None:
                continue
            h = self.hists[name].get(src)
            if h is None:
                h = self.hists[name][src] = _Hist(len(METRIC_BY_NAME[name].edges) - 1)
            edges = METRIC_BY_NAME[name].edges
            i = int(np.searchsorted(edges, v, side="right")) - 1
            h.counts[min(max(i, 0), len(h.counts) - 1)] += 1
            h.n += 1
            h.sum += v
            h.min, h.max = min(h.min, v), max(h.max, v)
        if pix is not None:
            acc = self.pixel_depth.get(src)
            self.pixel_depth[src] = pix if acc is None else acc + pix
        self.sensor.add(d, fields)
        for gate, (failed, score, observed) in checks.items():
            if not getattr(self.gates, gate).enabled:
                continue
            t = self.tally[gate]
            t.element += 1
            if failed:
                self._unexpected(gate, d, observed)
            self._offer_worst(gate, d, fields, score, observed, failed)

        if d.depth is not None:
            self.n_decoded += 1
            # reservoir (algorithm R)
            self.n_reservoir_seen += 1
            if len(self.reservoir) < self.sample_n:
                self.reservoir.append(self._tile(d, fields, 0.0, "", False))
            else:
                j = self.rng.randrange(self.n_reservoir_seen)
                if j < self.sample_n:
                    self.reservoir[j] = self._tile(d, fields, 0.0, "", False)

        self._set_checks(d, fields)

    def _set_checks(self, d: Decoded, fields) -> None:
        raw = d.raw
        where = f"{raw.split}:{raw.location}"
        # keys
        for g in ("keys_unique", "keys_disjoint_across_splits"):
            self.tally[g].element += 1
        first = self._key_first.get(raw.key)
        if first is None:
            self._key_first[raw.key] = raw.split
        else:
            ks = self._key_splits.get(raw.key)
            if ks is None:
                ks = self._key_splits[raw.key] = Counter({first: 1})
            new_split = raw.split not in ks
            ks[raw.split] += 1
            if not new_split:
                n = 2 if ks[raw.split] == 2 else 1
                obs = f"key occurs {ks[raw.split]}x in split {raw.split!r}"
                self._unexpected("keys_unique", d, obs, n)
                self._offer_worst("keys_unique", d, fields, float(ks[raw.split]), obs, True)
            else:
                n = 1 + (ks[first] if len(ks) == 2 else 0)
                obs = f"key in splits {sorted(ks)}"
                self._unexpected("keys_disjoint_across_splits", d, obs, n)
                self._offer_worst("keys_disjoint_across_splits", d, fields, float(len(ks)), obs, True)
        # subjects
        if fields["subject"] is not None:
            self.tally["subjects_disjoint_across_splits"].element += 1
            ss = self._subject_splits.setdefault(fields["subject"], Counter())
            new_split = raw.split not in ss
            ss[raw.split] += 1
            if new_split and len(ss) > 1:
                obs = f"subject {fields['subject']!r} in splits {sorted(ss)}"
                self._offer_worst("subjects_disjoint_across_splits", d, fields, float(len(ss)), obs, True)
        # exact duplicates (different keys, identical arrays)
        if d.array_hash is not None:
            self.tally["no_exact_duplicates"].element += 1
            fk = self._hash_first.get(d.array_hash)
            if fk is None:
                self._hash_first[d.array_hash] = raw.key
            elif fk != raw.key:
                grp = self._hash_groups.setdefault(d.array_hash, {fk})
                n = 2 if len(grp) == 1 else 1
                grp.add(raw.key)
                obs = f"identical arrays to key {fk!r} ({where})"
                self._unexpected("no_exact_duplicates", d, obs, n)
                self._offer_worst("no_exact_duplicates", d, fields, float(len(grp)), obs, True)
        del where

    # -- results
    def subject_leaks(self) -> dict[str, dict[str, int]]:
        """Subjects seen in more than one split -> {split: sample count}."""
        return {s: dict(c) for s, c in self._subject_splits.items() if len(c) > 1}

    def finish_gates(self, n_input_files: int = 0, input_errors: list[str] | None = None) -> list[dict[str, Any]]:
        """Evaluate every gate; returns Great-Expectations-like result dicts in report order.

        ``n_input_files`` (store folders + tars) and ``input_errors`` feed the ``inputs_readable`` gate.
        """
        from .gates import EXPECTATION_TYPES

        ti = self.tally["inputs_readable"]
        ti.element = max(n_input_files, len(input_errors or []))
        ti.unexpected = len(input_errors or [])
        ti.listed = [{"key": None, "location": e.split(": ", 1)[0], "split": None, "observed": e}
                     for e in (input_errors or [])][: ti.max_listed]

        leaks = self.subject_leaks()
        t = self.tally["subjects_disjoint_across_splits"]
        t.unexpected = sum(sum(c.values()) for c in leaks.values())
        t.listed = [{"subject": s, "splits": c} for s, c in sorted(leaks.items())][: t.max_listed]
        self.tally["no_exact_duplicates"].observed = {"duplicate_groups": len(self._hash_groups)}
        self.tally["keys_unique"].observed = {
            "keys_repeated_within_a_split": sum(1 for c in self._key_splits.values() if max(c.values()) > 1)}
        self.tally["keys_disjoint_across_splits"].observed = {
            "keys_in_several_splits": sum(1 for c in self._key_splits.values() if len(c) > 1)}
        t.observed = {"subjects_in_several_splits": len(leaks)}
        results = []
        for name in gate_names():
            cfg = getattr(self.gates, name)
            kwargs = cfg.model_dump(exclude={"enabled"})
            tl = self.tally[name]
            if not cfg.enabled:
                results.append({"success": True, "skipped": True,
                                "expectation_config": {"expectation_type": EXPECTATION_TYPES[name],
                                                       "kwargs": kwargs, "meta": {"gate": name, "enabled": False,
                                                                "description": "disabled in the gates file"}},
                                "result": {}, "exception_info": {"raised_exception": False}})
                continue
            el, un = tl.element, tl.unexpected
            pass_frac = (el - un) / el if el else 1.0
            success = pass_frac >= cfg.mostly - 1e-12
            res = {"element_count": el, "unexpected_count": un,
                   "unexpected_percent": (100.0 * un / el) if el else 0.0,
                   "observed_value": {"passing_fraction": pass_frac, **tl.observed},
                   "partial_unexpected_list": tl.listed,
                   "partial_unexpected_list_truncated": un > len(tl.listed) and name != "subjects_disjoint_across_splits"}
            results.append({
                "success": bool(success),
                "skipped": False,
                "expectation_config": {"expectation_type": EXPECTATION_TYPES[name], "kwargs": kwargs,
                                       "meta": {"gate": name, "enabled": True,
                                                "description": " ".join((type(cfg).__doc__ or "").replace("``", "").split())}},
                "result": res,
                "exception_info": {"raised_exception": False, "exception_message": None,
                                   "exception_traceback": None},
            })
        return results

    def worst_tiles(self, gate: str) -> list[Tile]:
        """The kept worst tiles of ``gate``, worst first."""
        return [t for _, _, t in sorted(self.tally[gate].heap, key=lambda x: (-x[0], x[1]))]

    def distributions(self) -> dict[str, Any]:
        """Histogram data per metric and source (JSON-able)."""
        out = {}
        for m in METRICS:
            per = {}
            for src, h in self.hists[m.name].items():
                per[src] = {"count": h.n, "mean": h.sum / h.n if h.n else None,
                            "min": h.min if h.n else None, "max": h.max if h.n else None,
                            "counts": h.counts.tolist()}
            out[m.name] = {"label": m.label, "bin_edges": [float(x) for x in m.edges], "log_bins": m.log,
                           "by_source": per}
        out["pixel_depth_m"] = {"label": "per-pixel valid depth (m)",
                                "bin_edges": [float(x) for x in PIXEL_DEPTH_EDGES], "log_bins": True,
                                "by_source": {s: {"count": int(c.sum()), "counts": c.tolist()}
                                              for s, c in self.pixel_depth.items()}}
        return out
