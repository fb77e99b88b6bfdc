"""Statistics of real and simulated depth-sensor frames, used to fit :mod:`synthgen.rendering.depth_sensor`
to Kinect v1 captures (``benchmarks/depth_sensor_fit.py``) and by the QA report: noise against depth,
hole rates against incidence and albedo, and the real fitting frames in ``tests/fixtures/sensor_fit``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from .depth_sensor import _window_minmax, edge_band, hole_statistics, interior, luminance
from ..colour import srgb8_to_linear
from ..camera import make_K


NOISE_BIN_M = 0.25
NOISE_EDGES_M = np.arange(0.0, 8.0 + 1e-9, NOISE_BIN_M)
"""Depth bins (m) of the noise-vs-depth statistics: 0 to 8 m in 0.25 m steps."""


def noise_moments(z: np.ndarray, edges: np.ndarray = NOISE_EDGES_M) -> tuple[np.ndarray, np.ndarray]:
    """Streaming form of :func:`noise_vs_depth`: per depth bin (``edges`` in metres, len B+1) the
    sum of squared second differences ``r`` (m²) and their count; both (B,) float64 / int64."""
    z = np.asarray(z, np.float64)
    c, l, r = z[:, 1:-1], z[:, :-2], z[:, 2:]
    ok = (c > 0) & (l > 0) & (r > 0) & np.isfinite(c) & np.isfinite(l) & np.isfinite(r)
    res = c - (l + r) / 2
    ok &= np.abs(res) < 0.02 * c
    zc, rc = c[ok], res[ok]
    idx = np.searchsorted(edges, zc, side="right") - 1
    keep = (idx >= 0) & (idx < len(edges) - 1)
    nb = len(edges) - 1
    return (np.bincount(idx[keep], rc[keep] ** 2, minlength=nb)[:nb],
            np.bincount(idx[keep], minlength=nb)[:nb].astype(np.int64))


def sigma_from_moments(sum_sq: np.ndarray, count: np.ndarray, edges: np.ndarray = NOISE_EDGES_M,
                       min_count: int = 500) -> list[tuple[float, float, int]]:
    """Per-bin ``(bin centre m, sigma m, pixels)`` from :func:`noise_moments` sums (bins with at
    least ``min_count`` pixels): ``sigma = sqrt(sum_sq / count / 1.5)``."""
    out = []
    for i, (s, n) in enumerate(zip(sum_sq, count)):
        if n >= min_count:
            out.append((float((edges[i] + edges[i + 1]) / 2), float(np.sqrt(s / n / 1.5)), int(n)))
    return out


def noise_vs_depth(z: np.ndarray, bin_m: float = 0.25, min_count: int = 500) -> list[tuple[float, float, int]]:
    """Per depth bin ``(bin centre m, sigma m, pixels)`` of the sensor noise, estimated from the
    horizontal second difference ``r = z(u) - (z(u-1) + z(u+1)) / 2`` of smooth valid pixels
    (``|r| < 2 %`` of z, which removes planar trends and edges): ``sigma = rms(r) / sqrt(1.5)``
    (``var r = 1.5 sigma²`` for independent noise)."""
    edges = np.arange(0.0, 8.0 + 1e-9, bin_m)
    return sigma_from_moments(*noise_moments(z, edges), edges, min_count)


def fit_sigma(bins: list[tuple[float, float, int]]) -> tuple[float, float]:
    """Least-squares ``sigma = a + b z²`` through per-bin ``(z, sigma, count)``, weighted by count;
    returns ``(a, b)`` (m, 1/m)."""
    z = np.array([b[0] for b in bins])
    s = np.array([b[1] for b in bins])
    w = np.sqrt(np.array([b[2] for b in bins], float))
    A = np.stack([np.ones_like(z), z ** 2], 1) * w[:, None]
    a, b = np.linalg.lstsq(A, s * w, rcond=None)[0]
    return float(a), float(b)


def _box_sum(a: np.ndarray, r: int) -> np.ndarray:
    """Sum over the (2r+1)² window of each pixel (zero outside the image), via an integral image."""
    c = np.pad(np.pad(a, r).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    k = 2 * r + 1
    return c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]


def plane_incidence_deg(z: np.ndarray, K: np.ndarray, radius_px: int = 4, min_valid: float = 0.3,
                        max_rms_rel: float = 0.01) -> np.ndarray:
    """Incidence angle (degrees) at every pixel, **holes included**, from a plane fitted to the
    valid depth around it.

    The valid pixels of the ``(2 r + 1)²`` window (``r = radius_px``) are back-projected with ``K``
    and a plane is fitted by total least squares (normal = eigenvector of the smallest eigenvalue of
    their 3×3 covariance); the angle is between that normal and the pixel's own viewing ray, which
    needs no depth at the pixel. So a hole gets the incidence of the surface around it, which is what
    makes hole rate *versus* incidence measurable on real frames. NaN where fewer than
    ``min_valid`` of the window (and fewer than 6 pixels) are valid, or where the plane's rms
    residual exceeds ``max_rms_rel`` of the mean depth (the window straddles an edge or a curved
    surface). Windows that lost most of their pixels are skipped, so large hole areas are
    under-represented: use the same estimator on simulated frames to compare (as the fit does).

    Returns:
        (H, W) float32 degrees in [0, 90], NaN where unsupported.
    """
    z = np.asarray(z, np.float64)
    H, W = z.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    ok = np.isfinite(z) & (z > 0)
    zz = np.where(ok, z, 0.0)
    P = [(u - K[0, 2]) / K[0, 0] * zz, (v - K[1, 2]) / K[1, 1] * zz, zz]
    n = _box_sum(ok.astype(np.float64), radius_px)
    S = [_box_sum(p, radius_px) for p in P]
    good = n >= max(min_valid * (2 * radius_px + 1) ** 2, 6)
    nn = np.where(good, n, 1.0)
    m = [s / nn for s in S]
    C = np.empty((H, W, 3, 3))
    for i in range(3):
        for j in range(i, 3):
            C[..., i, j] = C[..., j, i] = _box_sum(P[i] * P[j], radius_px) / nn - m[i] * m[j]
    C[~good] = np.eye(3)
    w, V = np.linalg.eigh(C)
    normal = V[..., :, 0]
    ray = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    cos = np.abs((normal * ray).sum(-1)) / np.linalg.norm(ray, axis=-1)
    ang = np.degrees(np.arccos(np.clip(cos, 0.0, 1.0)))
    good &= np.sqrt(np.maximum(w[..., 0], 0.0)) < max_rms_rel * m[2]
    return np.where(good, ang, np.nan).astype(np.float32)


def hole_rate_table(values: np.ndarray, holes: np.ndarray, edges: Sequence[float]) -> list[tuple[float, float, int, int]]:
    """Holes per bin of ``values``: ``[(lo, hi, holes, pixels), ...]`` for the bins ``edges``
    (NaN values are left out; the last bin includes its upper edge)."""
    edges = np.asarray(edges, np.float64)
    v = np.asarray(values, np.float64).ravel()
    h = np.asarray(holes, bool).ravel()
    ok = np.isfinite(v) & (v >= edges[0]) & (v <= edges[-1])
    idx = np.clip(np.searchsorted(edges, v[ok], side="right") - 1, 0, len(edges) - 2)
    nb = len(edges) - 1
    hs = np.bincount(idx, h[ok], minlength=nb)[:nb]
    ns = np.bincount(idx, minlength=nb)[:nb]
    return [(float(edges[i]), float(edges[i + 1]), int(hs[i]), int(ns[i])) for i in range(nb)]


def merge_tables(tables: list[list[tuple[float, float, int, int]]]) -> list[tuple[float, float, int, int]]:
    """Pool :func:`hole_rate_table` results over frames (same bins): holes and pixels are summed."""
    out = [list(r) for r in tables[0]]
    for t in tables[1:]:
        for o, r in zip(out, t):
            o[2] += r[2]
            o[3] += r[3]
    return [tuple(o) for o in out]  # type: ignore[misc]


INCIDENCE_EDGES_DEG = np.arange(0.0, 90.0 + 1e-9, 5.0)
ALBEDO_EDGES = np.concatenate([[0.0], np.logspace(-3, 0, 13)])
"""Albedo bins: 0, then 13 log-spaced edges from 0.001 to 1 (4 per decade)."""


def hole_rate_vs_incidence(z: np.ndarray, K: np.ndarray, edges: Sequence[float] = INCIDENCE_EDGES_DEG,
                           plane_radius_px: int = 4, jump_rel: float = 0.1,
                           radius_px: int = 2) -> list[tuple[float, float, int, int]]:
    """Hole rate versus incidence angle of a sensor depth map (real or simulated), over pixels
    outside the edge band (:func:`edge_band`) with a :func:`plane_incidence_deg` estimate (window
    radius ``plane_radius_px``); returns :func:`hole_rate_table` rows. Compare frames of similar
    resolution: both the band and the plane window are in pixels."""
    ang = plane_incidence_deg(z, K, plane_radius_px)
    ang[edge_band(z, jump_rel, radius_px)] = np.nan
    return hole_rate_table(ang, z <= 0, edges)


def hole_rate_vs_albedo(z: np.ndarray, albedo: np.ndarray, edges: Sequence[float] = ALBEDO_EDGES,
                        near_m: float = 0.5, far_m: float = 3.0, jump_rel: float = 0.1,
                        radius_px: int = 2) -> list[tuple[float, float, int, int]]:
    """Hole rate versus albedo over :func:`interior` pixels whose local depth (the nearest valid
    depth in the window) lies in ``[near_m, far_m]`` (portrait range; keeps out-of-range holes
    out); returns :func:`hole_rate_table` rows. ``albedo``: (H, W), e.g. :func:`albedo_proxy` of a
    real frame or the render's albedo."""
    lo, _ = _window_minmax(z, radius_px)
    sel = interior(z, jump_rel, radius_px) & (lo >= near_m) & (lo <= far_m)
    vals = np.where(sel, np.asarray(albedo, np.float64), np.nan)
    return hole_rate_table(vals, z <= 0, edges)


def albedo_proxy(rgb_linear: np.ndarray, white_percentile: float = 95.0, white_albedo: float = 0.8) -> np.ndarray:
    """Albedo stand-in for a real photo: linear luminance scaled so that its ``white_percentile``
    percentile reads ``white_albedo`` (the brightest surfaces of an indoor frame, white walls and
    paper, taken as albedo 0.8), clipped to [0, 1]. An approximation: it ignores shading and the
    difference between visible and near-infrared reflectance. (H, W, 3) -> (H, W) float32."""
    Y = luminance(rgb_linear)
    ref = float(np.percentile(Y, white_percentile))
    return np.clip(Y * (white_albedo / max(ref, 1e-6)), 0.0, 1.0).astype(np.float32)


def fit_dark(rows: list[tuple[float, float, int, int]], min_pixels: int = 1000,
             powers: Sequence[float] = (1.0, 1.5, 2.0, 3.0, 4.0)) -> dict[str, float]:
    """Fit ``p(a) = 1 - (1 - base)(1 - d / (1 + (a / a0) ** k))`` to hole rate versus albedo rows
    (:func:`hole_rate_vs_albedo`, pooled). Bins with ``min_pixels`` or more count, each at its
    geometric centre (the first bin at half its upper edge), weighted by ``pixels / (p (1 - p))``
    (inverse binomial variance). Grid search over ``a0`` (0.002 to 0.5, log) and ``k`` in
    ``powers``, linear least squares for ``base`` and ``c = d (1 - base)`` at each point.

    Returns:
        ``{"base_dropout", "dark_hole_prob", "dark_albedo", "dark_power", "rms"}`` (rms: weighted
        rms residual of the hole rate).
    """
    pts = [((lo * hi) ** 0.5 if lo > 0 else hi / 2, h / n, n) for lo, hi, h, n in rows if n >= min_pixels]
    a = np.array([p[0] for p in pts])
    y = np.array([p[1] for p in pts])
    w = np.array([p[2] for p in pts], float) / np.clip(y * (1 - y), 1e-3, None)
    best = None
    for k in powers:
        for a0 in np.logspace(np.log10(0.002), np.log10(0.5), 81):
            h = 1.0 / (1.0 + (a / a0) ** k)
            A = np.stack([np.ones_like(h), h], 1) * np.sqrt(w)[:, None]
            (base, c), *_ = np.linalg.lstsq(A, y * np.sqrt(w), rcond=None)
            if base < 0 or c < 0 or base >= 1:
                continue
            rms = float(np.sqrt(np.sum(w * (base + c * h - y) ** 2) / np.sum(w)))
            if best is None or rms < best["rms"]:
                best = {"base_dropout": float(base), "dark_hole_prob": float(min(c / (1 - base), 1.0)),
                        "dark_albedo": float(a0), "dark_power": float(k), "rms": rms}
    if best is None:
        raise ValueError("fit_dark: no admissible fit (hole rate does not fall with albedo)")
    return best


# ----------------------------------------------------------------------------- real frames
SENSOR_FIT_DIR = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "sensor_fit"


def load_sensor_depth(path: str) -> np.ndarray:
    """Read a real 16-bit depth frame as (H, W) float32 metres (0 = hole): TUM RGB-D PNG
    (value / 5000) or slambook2 binary PGM (``P5``, big-endian, value / 1000)."""
    from PIL import Image

    if str(path).lower().endswith(".pgm"):
        raw = open(path, "rb").read()
        parts = raw.split(maxsplit=4)
        if parts[0] != b"P5" or int(parts[3]) != 65535:
            raise ValueError(f"{path}: not a 16-bit binary PGM")
        w, h = int(parts[1]), int(parts[2])
        return np.frombuffer(raw[len(raw) - 2 * w * h:], ">u2").reshape(h, w).astype(np.float32) / 1000.0
    return np.asarray(Image.open(path)).astype(np.float32) / 5000.0


def load_rgb_linear(path: str) -> np.ndarray:
    """Read an 8-bit sRGB image as (H, W, 3) float32 linear RGB (IEC 61966-2-1 decoding)."""
    from PIL import Image

    return srgb8_to_linear(np.asarray(Image.open(path).convert("RGB")))


def sensor_fit_frames(root: str | Path = SENSOR_FIT_DIR) -> list[dict[str, Any]]:
    """The real frames of a sensor-fit folder, from its ``frames.json``: one dict per depth frame
    with ``dataset``, ``depth`` (path), ``rgb`` (path of the registered colour frame or None) and
    ``K`` (3×3 float64 intrinsics of the depth frame, pixels)."""
    root = Path(root)
    spec = json.loads((root / "frames.json").read_text("utf-8"))
    out = []
    for ds, d in spec["datasets"].items():
        K = make_K(d["fx"], d["fy"], d["cx"], d["cy"])
        for f in d["frames"]:
            out.append({"dataset": ds, "depth": str(root / ds / f["depth"]),
                        "rgb": str(root / ds / f["rgb"]) if f.get("rgb") else None, "K": K})
    return out


# ----------------------------------------------------------------------------- calibration render
CALIBRATION_STRIP_ALBEDOS = (0.01, 0.03, 0.1, 0.3, 0.8)
"""Albedos of the back-wall strips of the calibration scene, left to right."""


def capture_statistics(frames: list[dict[str, Any]]) -> dict[str, Any]:
    """The fit's statistics of real captures (``frames`` as from :func:`sensor_fit_frames`), with
    the same estimators used on the simulation.

    Returns:
        ``{"noise_bins": [(z_m, sigma_m, count)] below 5 m, "holes": hole_statistics averaged over
        frames, "incidence": merged hole rate vs incidence table, "albedo": merged hole rate vs
        albedo-proxy table (frames with a colour image only)}``.
    """
    bins, holes, inc, alb = [], [], [], []
    for f in frames:
        z = load_sensor_depth(f["depth"])
        bins += [b for b in noise_vs_depth(z) if b[0] < 5.0]
        holes.append(hole_statistics(z))
        inc.append(hole_rate_vs_incidence(z, f["K"]))
        if f["rgb"]:
            alb.append(hole_rate_vs_albedo(z, albedo_proxy(load_rgb_linear(f["rgb"]))))
    return {"noise_bins": bins, "holes": {k: float(np.mean([h[k] for h in holes])) for k in holes[0]},
            "incidence": merge_tables(inc), "albedo": merge_tables(alb)}
