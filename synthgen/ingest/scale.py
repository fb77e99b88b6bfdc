"""Depth-scale evidence: which raw-units-per-metre a folder of 16-bit depth images uses.

A depth scale is never assumed silently where the layout does not fix it (issue 14). The layouts
with a documented unit (TUM 5000, Redwood 1000, KITTI 256, SUN RGB-D bit-rotated millimetres,
NYU raw disparity, Azure Kinect millimetres) use it. For ``kinect-mm`` (``color/`` + ``depth/``,
no stated unit) the scale comes from ``--depth-scale``, else a ``depth_scale`` in the intrinsics
file, else it is *inferred* here from the evidence below, and ingest refuses (exit 2) when the
evidence is ambiguous. Every record says which scale was used and why
(``capture.depth_scale``); the ingest report warns when a scale was inferred.

Evidence, computed on up to :data:`SAMPLE_FRAMES` frames spread over the sequence:

1. **SUN RGB-D bit rotation.** SUN RGB-D stores millimetres rotated by 3 bits,
   ``stored = (mm << 3 | mm >> 13) & 0xFFFF``. For depths below 8.192 m every stored value is then
   a multiple of 8; in ordinary millimetre or TUM data about 1/8 are. When more than
   :data:`SUN_MULTIPLE_OF_8` of the non-zero values are multiples of 8 the data is taken as
   rotated: no linear scale can read it (``--depth-scale 8000`` is right below 8.19 m and wrong by
   up to 8.19 m above), so ingest refuses and names the rotation (``--format sunrgbd`` decodes it).
2. **Kinect v1 disparity quantisation** (agreement with the intrinsics). Structured-light Kinect v1
   / PrimeSense depth comes from 1/8-pixel disparity steps, so consecutive distinct depth values
   differ by ``dz = z^2 / (8 f b)`` (``f`` the focal length in pixels, ``b`` = 0.075 m the
   projector baseline). When the raw values are quantised like that (median gap between
   consecutive distinct values >= 3 raw units), the constant ``c = dz / z^2`` measured under each
   candidate scale is compared with ``1 / (8 f b)``: the measured ``c`` grows linearly with the
   assumed scale, so a 5x unit error shows as a 5x disagreement. TUM fr1 frames give 0.90 at
   /5000 and 0.18 at /1000.
3. **Valid range** under each candidate: at least 98 % of the valid depth within the Kinect-class
   working range 0.3-10 m (:data:`RANGE_M`) and a median within typical indoor scene extents
   0.5-8 m.

Candidates: :data:`CANDIDATES` (1000: millimetres, Kinect/PrimeSense/RealSense/Structure; 5000:
TUM RGB-D). A candidate is chosen when it is the only one consistent with the quantisation
evidence (when present) and the range evidence; otherwise ingest refuses with the evidence and
asks for ``--depth-scale``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FrameError, SourceError

CANDIDATES = {1000.0: "millimetres (Kinect/PrimeSense/RealSense convention)", 5000.0: "TUM RGB-D (1/5000 m)"}
RANGE_M = (0.3, 10.0)
SCENE_MEDIAN_M = (0.5, 8.0)
MAX_OUTSIDE = 0.02
SAMPLE_FRAMES = 8
SUN_MULTIPLE_OF_8 = 0.95
KINECT_BASELINE_M = 0.075
KINECT_SUBPIXEL = 8.0
QUANT_RATIO_OK = (0.6, 1.6)


def sun_rotate(raw: np.ndarray) -> np.ndarray:
    """SUN RGB-D stored depth -> millimetres: rotate the 16-bit value right by 3 bits,
    ``(d >> 3) | (d << 13)`` (as SUN RGB-D's ``read3dPoints.m`` does)."""
    d = raw.astype(np.uint16)
    return ((d >> np.uint16(3)) | (d << np.uint16(13))).astype(np.uint16)


def sun_unrotate(mm: np.ndarray) -> np.ndarray:
    """Millimetres -> SUN RGB-D stored value (rotate left by 3): the inverse of :func:`sun_rotate`."""
    d = mm.astype(np.uint16)
    return ((d << np.uint16(3)) | (d >> np.uint16(13))).astype(np.uint16)


def sample_raw(paths: list[Path], loader) -> np.ndarray:
    """Non-zero raw values of up to :data:`SAMPLE_FRAMES` depth images spread over ``paths``
    (unreadable files are skipped: their frames are quarantined later)."""
    if not paths:
        return np.zeros(0, np.int64)
    idx = sorted(set(np.linspace(0, len(paths) - 1, min(SAMPLE_FRAMES, len(paths))).round().astype(int).tolist()))
    vals = []
    for i in idx:
        try:
            a, bits = loader(paths[i])
        except FrameError:
            continue
        if bits != 16:
            continue
        v = a.astype(np.int64).ravel()
        vals.append(v[v > 0])
    return np.concatenate(vals) if vals else np.zeros(0, np.int64)


def rotation_evidence(vals: np.ndarray) -> dict[str, Any] | None:
    """``{"multiple_of_8_fraction", "above_8m_fraction"}`` when ``vals`` look SUN-rotated, else None."""
    if vals.size < 100:
        return None
    m8 = float(np.mean(vals % 8 == 0))
    if m8 < SUN_MULTIPLE_OF_8:
        return None
    mm = sun_rotate(vals.astype(np.uint16)).astype(np.int64)
    return {"multiple_of_8_fraction": round(m8, 4), "above_8m_fraction": round(float(np.mean(mm >= 8192)), 4),
            "max_error_m_if_read_linearly": round(float(np.max(np.abs(vals / 8000.0 - mm / 1000.0))), 3)}


def rotation_message(where: str, ev: dict[str, Any]) -> str:
    return (f"{where}: depth looks SUN RGB-D bit-rotated ({ev['multiple_of_8_fraction']:.1%} of the non-zero raw "
            f"values are multiples of 8; about 12% would be for linear depth). SUN RGB-D stores millimetres rotated "
            f"by 3 bits: mm = (d >> 3) | (d << 13). No linear --depth-scale reads it: 8000 is right below 8.19 m "
            f"and wrong above ({ev['above_8m_fraction']:.2%} of these pixels, up to "
            f"{ev['max_error_m_if_read_linearly']:g} m off). Use --format sunrgbd.")


def quantisation_ratio(vals: np.ndarray, scale: float, fx: float) -> float | None:
    """Measured Kinect-v1 quantisation constant under ``scale`` divided by the expected
    ``1 / (8 f b)``; None when the values are not quantised (median distinct-value gap < 3)."""
    u, cnt = np.unique(vals, return_counts=True)
    if u.size < 20:
        return None
    gaps = np.diff(u)
    if np.median(gaps) < 3:
        return None
    keep = cnt[:-1] >= 5  # levels seen often enough to be real quantisation levels
    if keep.sum() < 10:
        return None
    z = u[:-1][keep] / scale
    c = (gaps[keep] / scale) / z ** 2
    return float(np.median(c) * KINECT_SUBPIXEL * fx * KINECT_BASELINE_M)


def range_evidence(vals: np.ndarray, scale: float) -> dict[str, Any]:
    z = vals / scale
    outside = float(np.mean((z < RANGE_M[0]) | (z > RANGE_M[1])))
    med = float(np.median(z))
    ok = outside <= MAX_OUTSIDE and SCENE_MEDIAN_M[0] <= med <= SCENE_MEDIAN_M[1]
    return {"outside_0.3_10m": round(outside, 4), "median_m": round(med, 3),
            "p1_m": round(float(np.percentile(z, 1)), 3), "p99_m": round(float(np.percentile(z, 99)), 3),
            "plausible": ok}


def infer_scale(vals: np.ndarray, fx: float | None, where: str) -> dict[str, Any]:
    """Choose the depth scale for raw 16-bit values ``vals`` (non-zero) of a layout without a
    documented unit. Returns the decision ``{"value", "source": "inferred", "reason", "evidence"}``.

    Raises:
        SourceError: SUN-rotated data, no usable depth, or ambiguous evidence (the message gives
            the evidence and asks for ``--depth-scale``).
    """
    if vals.size < 100:
        raise SourceError(f"{where}: cannot infer the depth scale (too few valid depth pixels in the sampled "
                          "frames); pass --depth-scale")
    rot = rotation_evidence(vals)
    if rot:
        raise SourceError(rotation_message(where, rot))
    fx_used, fx_note = (fx, "fx from the intrinsics") if fx else (525.0, "nominal Kinect fx 525 px (no intrinsics)")
    evidence: dict[str, Any] = {"values_sampled": int(vals.size), "fx_px": fx_used, "fx_note": fx_note}
    plausible, quant_ok, any_quant = [], [], False
    for s in CANDIDATES:
        r = range_evidence(vals, s)
        q = quantisation_ratio(vals, s, fx_used)
        r["kinect_quantisation_ratio"] = None if q is None else round(q, 3)
        evidence[f"scale_{s:g}"] = r
        if r["plausible"]:
            plausible.append(s)
        if q is not None:
            any_quant = True
            if QUANT_RATIO_OK[0] <= q <= QUANT_RATIO_OK[1]:
                quant_ok.append(s)
    chosen = None
    if any_quant:
        both = [s for s in quant_ok if s in plausible]
        if len(both) == 1 and len(quant_ok) == 1:
            chosen = both[0]
            why = (f"Kinect v1 disparity quantisation agrees with the intrinsics only at /{chosen:g} "
                   f"(measured/expected {evidence[f'scale_{chosen:g}']['kinect_quantisation_ratio']:g}) and the depth "
                   f"is in the 0.3-10 m range there")
    elif len(plausible) == 1:
        chosen = plausible[0]
        why = (f"only /{chosen:g} puts the depth in a Kinect-class range (outside 0.3-10 m: "
               + ", ".join(f"/{s:g} {evidence[f'scale_{s:g}']['outside_0.3_10m']:.1%}" for s in CANDIDATES)
               + "; medians " + ", ".join(f"/{s:g} {evidence[f'scale_{s:g}']['median_m']:g} m" for s in CANDIDATES)
               + ")")
    if chosen is None:
        summ = "; ".join(f"/{s:g}: median {evidence[f'scale_{s:g}']['median_m']:g} m, "
                         f"{evidence[f'scale_{s:g}']['outside_0.3_10m']:.1%} outside 0.3-10 m, quantisation ratio "
                         f"{evidence[f'scale_{s:g}']['kinect_quantisation_ratio']}" for s in CANDIDATES)
        raise SourceError(f"{where}: the depth scale is not stated and the evidence is ambiguous ({summ}); "
                          "pass --depth-scale (raw units per metre)")
    return {"value": float(chosen), "source": "inferred", "unit": CANDIDATES[chosen],
            "reason": f"inferred: {why}", "evidence": evidence}


def stated(value: float, source: str, reason: str) -> dict[str, Any]:
    """A depth-scale decision that was not inferred (``source``: option, intrinsics_file, layout)."""
    return {"value": float(value), "source": source, "reason": reason}
