"""Per-frame validation: each check returns a metric (always recorded) and, when it fails its
threshold (:class:`~synthgen.ingest.options.Thresholds`), a reason that quarantines the frame.

Checks: resolution (done before, in the pipeline), depth plausibility within the sensor's near/far,
holes, 8-bit depth mistakes, timestamp skew, exposure clipping, blur, intrinsics. Exact duplicates
are found across frames by the pipeline from :func:`frame_digest`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from .common import LoadedFrame
from .options import Thresholds


def grey8(rgb8: np.ndarray) -> np.ndarray:
    """``(H, W, 3) uint8`` -> ``(H, W) float32`` luma (Rec.601 weights) on the 0..255 scale."""
    return rgb8[..., 0] * np.float32(0.299) + rgb8[..., 1] * np.float32(0.587) + rgb8[..., 2] * np.float32(0.114)


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian (interior pixels) of a 0..255 grey image: the
    "variance of Laplacian" focus measure (Pech-Pacheco et al., ICPR 2000). Low = blurred."""
    g = grey.astype(np.float32)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def frame_digest(rgb: np.ndarray, depth: np.ndarray) -> str:
    """sha256 over the decoded colour and depth pixels (shape, dtype and bytes): equal digests mean
    an exact duplicate frame, even when the source files are encoded differently."""
    h = hashlib.sha256()
    for a in (rgb, depth):
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def validate(frame: LoadedFrame, rgb8: np.ndarray, th: Thresholds) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Run the per-frame checks.

    Args:
        frame: the decoded frame (depth already on the stored grid).
        rgb8: ``(H, W, 3) uint8`` sRGB view of the colour (for exposure and blur).
        th: thresholds.

    Returns:
        ``(metrics, reasons)``: metrics dict (recorded in the sample record and the report) and a list
        of ``(reason code, detail)`` for failed checks (empty = frame passes).
    """
    d = frame.depth
    valid = d > 0
    n = d.size
    holes = float(1.0 - valid.sum() / n)
    m: dict[str, Any] = {"holes_fraction": round(holes, 6)}
    reasons: list[tuple[str, str]] = []
    if valid.any():
        m["depth_min"] = float(d[valid].min())
        m["depth_max"] = float(d[valid].max())
        m["depth_median"] = float(np.median(d[valid]))
    if not valid.any():
        reasons.append(("no_valid_depth", "every depth pixel is invalid (0)"))
    elif frame.capture.get("sparse"):
        m["holes_check"] = "skipped: sparse (LiDAR) depth"
    elif holes > th.max_holes:
        reasons.append(("too_many_holes", f"{holes:.1%} of depth pixels invalid > max_holes {th.max_holes:.1%}"))
    # plausibility
    if frame.metric and frame.sensor_range_m and valid.any():
        near, far = frame.sensor_range_m
        out = float(((d < near * 0.999) | (d > far * 1.001))[valid].mean())
        m["sensor_range_m"] = [near, far]
        m["out_of_range_fraction"] = round(out, 6)
        if out > th.max_out_of_range:
            reasons.append(("depth_out_of_range",
                            f"{out:.1%} of valid depth outside the sensor range {near:g}-{far:g} m "
                            f"(min {m['depth_min']:.3f}, max {m['depth_max']:.3f}) > {th.max_out_of_range:.1%}"))
    else:
        m["plausibility_check"] = "skipped: " + ("relative depth" if not frame.metric else "sensor range unknown")
    # 8-bit mistakes
    m["depth_bits"] = frame.depth_bits
    if frame.expects_16bit:
        if frame.depth_bits == 8:
            reasons.append(("depth_8bit", "depth stored as an 8-bit image where this format expects 16-bit"))
        elif frame.depth_raw_max is not None and 0 < frame.depth_raw_max <= 255:
            reasons.append(("depth_8bit", f"16-bit depth whose largest raw value is {frame.depth_raw_max:g} <= 255: "
                                          "looks like 8-bit data saved in a 16-bit file"))
    # timestamps
    if frame.timestamp_skew_s is not None:
        m["timestamp_skew_s"] = round(frame.timestamp_skew_s, 6)
        if frame.timestamp_skew_s > th.max_timestamp_skew_s:
            reasons.append(("timestamp_skew", f"|t_rgb - t_depth| = {frame.timestamp_skew_s:.4f} s > "
                                              f"{th.max_timestamp_skew_s} s"))
    # exposure
    hi = float((rgb8 >= 255).all(-1).mean())
    lo = float((rgb8 <= 0).all(-1).mean())
    m["clipped_high_fraction"] = round(hi, 6)
    m["clipped_low_fraction"] = round(lo, 6)
    if hi > th.max_clipped:
        reasons.append(("overexposed", f"{hi:.1%} of pixels clipped at 255 > max_clipped {th.max_clipped:.1%}"))
    if lo > th.max_clipped:
        reasons.append(("underexposed", f"{lo:.1%} of pixels black > max_clipped {th.max_clipped:.1%}"))
    # blur
    sharp = laplacian_variance(grey8(rgb8))
    m["sharpness_laplacian_var"] = round(sharp, 3)
    if th.min_sharpness > 0 and sharp < th.min_sharpness:
        reasons.append(("blurred", f"variance of Laplacian {sharp:.2f} < min_sharpness {th.min_sharpness:g}"))
    # intrinsics
    if frame.K is None:
        reasons.append(("intrinsics_missing", "no intrinsics: pass --intrinsics FILE, put intrinsics.json in the "
                                              "source folder, or opt into the documented default with "
                                              "--default-intrinsics"))
    return m, reasons
