"""Depth-sensor simulation (structured-light Kinect v1 / PrimeSense class) and the statistics used to
fit it to real captures.

Model, applied to a clean planar z-depth map ``z`` (H, W) float32 metres, 0 = no surface, with
optional per-pixel surface information from the render (``albedo``, ``specularity``; see
:func:`surface_from_passes`). Every cause below is an independent Bernoulli draw per pixel; a pixel
is a hole (0) when any cause fires.

1. **Discontinuity holes.** A pixel lies in the *edge band* when the valid depths in its
   ``(2 r + 1)²`` window (``r = edge_radius_px``) differ by more than ``edge_jump_rel`` of the
   nearest one. Band pixels become holes with probability ``edge_hole_prob`` (structured-light
   shadowing and mixed pixels at silhouettes).
2. **Grazing holes.** The surface normal is estimated from the back-projected depth (central
   differences, intrinsics ``K``); outside the edge band a pixel whose angle ``θ`` between normal and
   viewing ray is large becomes a hole with probability ``1 / (1 + exp(-(θ - grazing_deg) /
   grazing_width_deg))`` (a hard cut at ``grazing_deg`` when the width is 0): the projected dot
   pattern is too stretched, and too little light comes back, to decode.
3. **Dark and specular holes** (when ``albedo`` and ``specularity`` are given). A structured-light
   sensor loses depth where the surface returns little of the projected infrared light: dark
   (low-albedo) surfaces, and specular ones that mirror the pattern away from the camera. Hole
   probability ``1 - (1 - base_dropout)(1 - p_dark)(1 - p_spec)`` with
   ``p_dark = dark_hole_prob / (1 + (albedo / dark_albedo) ** dark_power)`` (a Hill-type fall-off:
   ``dark_hole_prob / 2`` at ``albedo = dark_albedo``) and
   ``p_spec = specular_hole_prob * clip((specularity - specular_min) / (1 - specular_min), 0, 1)``.
   Without surface inputs every pixel becomes a hole with probability ``dropout`` instead (fitted to
   the overall rate of such holes in real frames, so mixed scenes keep the right hole fraction).
4. **Noise.** ``z += N(0, sigma(z))`` with ``sigma = sigma_a_m + sigma_b_per_m * z²`` metres; the z²
   growth is that of triangulation with a fixed baseline (Khoshelham & Elberink, "Accuracy and
   Resolution of Kinect Depth Data for Indoor Mapping Applications", Sensors 2012).
5. **Range and quantisation.** Depths outside ``[min_depth_m, max_depth_m]`` become 0; the rest is
   rounded to ``quantum_m`` (1 mm: a 16-bit millimetre depth image).

Albedo and specularity come from Cycles' *Diffuse Color* and *Glossy Color* passes (the colour
weights of the diffuse and glossy BSDF closures, independent of the lighting): ``albedo`` is the
Rec. 709 luminance of Diffuse Color, ``specularity`` the glossy share ``Yg / (Yg + Yd)`` of the two
luminances (about 0.05 for a white dielectric, 0.65 for a black one, 1 for a metal). The passes
carry no roughness, so a rough and a polished material of the same colours have the same
specularity; visible albedo stands in for the sensor's near-infrared (830 nm) albedo.

The default parameters were fitted by ``benchmarks/depth_sensor_fit.py`` to the Kinect v1 frames in
``tests/fixtures/sensor_fit`` (TUM RGB-D fr1/xyz and slambook2); see ``docs/sample_format.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

REC709_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def _window_minmax(z: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of valid (> 0) depths in the (2r+1)² window of each pixel (inf / -inf if none)."""
    lo_in = np.where(z > 0, z, np.inf)
    hi_in = np.where(z > 0, z, -np.inf)
    lo = sliding_window_view(np.pad(lo_in, r, constant_values=np.inf), (2 * r + 1, 2 * r + 1)).min((-1, -2))
    hi = sliding_window_view(np.pad(hi_in, r, constant_values=-np.inf), (2 * r + 1, 2 * r + 1)).max((-1, -2))
    return lo, hi


def edge_band(z: np.ndarray, jump_rel: float = 0.1, radius_px: int = 2) -> np.ndarray:
    """(H, W) bool: pixels whose window holds valid depths differing by more than ``jump_rel`` of
    the nearest (a depth discontinuity within ``radius_px``)."""
    lo, hi = _window_minmax(z, radius_px)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.isfinite(lo) & np.isfinite(hi) & ((hi - lo) > jump_rel * lo)


def incidence_deg(z: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(H, W) float32 angle (degrees) between the surface normal and the viewing ray, from the
    depth map's back-projection (OpenCV pinhole ``K``); NaN where a neighbour is invalid."""
    H, W = z.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    zz = z.astype(np.float64)
    P = np.stack([(u - K[0, 2]) / K[0, 0] * zz, (v - K[1, 2]) / K[1, 1] * zz, zz], -1)
    du = np.full_like(P, np.nan)
    dv = np.full_like(P, np.nan)
    du[:, 1:-1] = P[:, 2:] - P[:, :-2]
    dv[1:-1] = P[2:] - P[:-2]
    n = np.cross(du, dv)
    ok = (z > 0)
    ok[:, 1:-1] &= (z[:, 2:] > 0) & (z[:, :-2] > 0)
    ok[1:-1] &= (z[2:] > 0) & (z[:-2] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.abs((n * P).sum(-1)) / (np.linalg.norm(n, axis=-1) * np.linalg.norm(P, axis=-1))
        ang = np.degrees(np.arccos(np.clip(cos, 0, 1)))
    return np.where(ok, ang, np.nan).astype(np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) linear RGB -> (H, W) float32 Rec. 709 luminance ``0.2126 R + 0.7152 G + 0.0722 B``."""
    return (np.asarray(rgb, np.float32) @ REC709_LUMA).astype(np.float32)


def surface_from_passes(diffuse_color: np.ndarray, glossy_color: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Albedo and specularity from Cycles' Diffuse Color and Glossy Color passes.

    Args:
        diffuse_color, glossy_color: (H, W, 3) float linear RGB, the passes un-premultiplied by
            coverage (as returned by :meth:`synthgen.blender.BlenderRenderer.render` with
            ``surface_passes=True``).

    Returns:
        ``(albedo, specularity)``: (H, W) float32 each; ``albedo`` = luminance of Diffuse Color in
        [0, 1]; ``specularity`` = ``Yg / (Yg + Yd)`` in [0, 1] (0 where both are 0).
    """
    yd = np.clip(luminance(diffuse_color), 0.0, 1.0)
    yg = np.clip(luminance(glossy_color), 0.0, 1.0)
    tot = yd + yg
    with np.errstate(invalid="ignore", divide="ignore"):
        spec = np.where(tot > 0, yg / np.where(tot > 0, tot, 1.0), 0.0)
    return yd.astype(np.float32), np.clip(spec, 0.0, 1.0).astype(np.float32)


def dark_hole_probability(albedo: np.ndarray, dark_hole_prob: float, dark_albedo: float,
                          dark_power: float) -> np.ndarray:
    """``dark_hole_prob / (1 + (albedo / dark_albedo) ** dark_power)`` (float64, same shape)."""
    a = np.clip(np.asarray(albedo, np.float64), 0.0, None)
    return dark_hole_prob / (1.0 + (a / max(dark_albedo, 1e-12)) ** dark_power)


def specular_hole_probability(specularity: np.ndarray, specular_hole_prob: float, specular_min: float) -> np.ndarray:
    """``specular_hole_prob * clip((s - specular_min) / (1 - specular_min), 0, 1)`` (float64)."""
    s = np.asarray(specularity, np.float64)
    return specular_hole_prob * np.clip((s - specular_min) / max(1.0 - specular_min, 1e-12), 0.0, 1.0)


def grazing_hole_probability(angle_deg: np.ndarray, grazing_deg: float, grazing_width_deg: float) -> np.ndarray:
    """Hole probability at incidence ``angle_deg`` (degrees; NaN -> 0): logistic
    ``1 / (1 + exp(-(θ - grazing_deg) / grazing_width_deg))``, a step at ``grazing_deg`` for width 0."""
    a = np.nan_to_num(np.asarray(angle_deg, np.float64), nan=0.0)
    if grazing_width_deg <= 0:
        return (a > grazing_deg).astype(np.float64)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-(a - grazing_deg) / grazing_width_deg))


def simulate(z: np.ndarray, K: np.ndarray, rng: np.random.Generator, *, sigma_a_m: float,
             sigma_b_per_m: float, edge_jump_rel: float, edge_radius_px: int, edge_hole_prob: float,
             grazing_deg: float, dropout: float, min_depth_m: float, max_depth_m: float,
             quantum_m: float, grazing_width_deg: float = 0.0, base_dropout: float | None = None,
             dark_hole_prob: float = 0.0, dark_albedo: float = 0.05, dark_power: float = 2.0,
             specular_hole_prob: float = 0.0, specular_min: float = 0.85,
             albedo: np.ndarray | None = None, specularity: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Simulate a depth sensor on clean planar depth ``z`` ((H, W) float32 m, 0 = none).

    Args:
        z: (H, W) clean planar z-depth, metres, 0 = no surface.
        K: 3×3 intrinsics in pixels (OpenCV).
        rng: the per-sample generator (every random draw comes from it, in a fixed order, whatever
            the inputs: five uniform fields, then one normal field).
        albedo, specularity: optional (H, W) surface information in [0, 1] (see
            :func:`surface_from_passes`); with both given, step 3 of the model uses the dark and
            specular terms and ``base_dropout`` (default: ``dropout``), else the uniform ``dropout``.
        other keyword arguments: the model parameters (see the module docstring and
            :class:`synthgen.config.DepthSensorConfig`; metres, degrees, probabilities).

    Returns:
        ``(sensor_depth, stats)``: (H, W) float32 metres with 0 for holes, and a dict with the hole
        fractions by cause over pixels with a clean depth (``hole_fraction``, ``edge_holes``,
        ``grazing_holes``, ``dropout_holes``, ``dark_holes``, ``specular_holes``,
        ``range_holes``; causes may overlap) and ``surface_inputs`` (whether albedo/specularity
        were used).

    Raises:
        ValueError: ``albedo`` or ``specularity`` given alone or with a shape other than ``z``'s.
    """
    z = np.asarray(z, np.float32)
    if (albedo is None) != (specularity is None):
        raise ValueError("simulate: give both albedo and specularity, or neither")
    surface = albedo is not None
    if surface and (np.shape(albedo) != z.shape or np.shape(specularity) != z.shape):
        raise ValueError(f"simulate: albedo {np.shape(albedo)} / specularity {np.shape(specularity)} "
                         f"must have the depth's shape {z.shape}")
    valid = z > 0
    u_edge, u_graze, u_drop, u_dark, u_spec = (rng.random(z.shape) for _ in range(5))
    band = edge_band(z, edge_jump_rel, edge_radius_px) & valid
    edge_holes = band & (u_edge < edge_hole_prob)
    ang = incidence_deg(z, K)  # normals across edges are meaningless: grazing only outside the band
    grazing = valid & ~band & (u_graze < grazing_hole_probability(ang, grazing_deg, grazing_width_deg))
    if surface:
        base = dropout if base_dropout is None else base_dropout
        drop = valid & (u_drop < base)
        dark = valid & (u_dark < dark_hole_probability(albedo, dark_hole_prob, dark_albedo, dark_power))
        spec = valid & (u_spec < specular_hole_probability(specularity, specular_hole_prob, specular_min))
    else:
        drop = valid & (u_drop < dropout)
        dark = spec = np.zeros_like(valid)
    sigma = sigma_a_m + sigma_b_per_m * z.astype(np.float64) ** 2
    noisy = z + rng.standard_normal(z.shape) * sigma
    if quantum_m > 0:
        noisy = np.round(noisy / quantum_m) * quantum_m
    out_of_range = valid & ((noisy < min_depth_m) | (noisy > max_depth_m))
    holes = ~valid | edge_holes | grazing | drop | dark | spec | out_of_range
    out = np.where(holes, 0.0, noisy).astype(np.float32)
    n = max(int(valid.sum()), 1)
    stats = {"hole_fraction": float((holes & valid).sum() / n), "edge_holes": float(edge_holes.sum() / n),
             "grazing_holes": float(grazing.sum() / n), "dropout_holes": float(drop.sum() / n),
             "dark_holes": float(dark.sum() / n), "specular_holes": float(spec.sum() / n),
             "range_holes": float(out_of_range.sum() / n), "surface_inputs": bool(surface)}
    if surface:
        stats["mean_albedo"] = float(np.mean(albedo[valid])) if valid.any() else None
        stats["mean_specularity"] = float(np.mean(specularity[valid])) if valid.any() else None
    return out, stats


# ----------------------------------------------------------------------------- statistics
def interior(z: np.ndarray, jump_rel: float = 0.1, radius_px: int = 2) -> np.ndarray:
    """(H, W) bool: pixels (holes included) whose window holds valid depths, all within
    ``jump_rel`` of each other (away from discontinuities; see :func:`edge_band`)."""
    lo, _ = _window_minmax(z, radius_px)
    return np.isfinite(lo) & ~edge_band(z, jump_rel, radius_px)


def hole_statistics(z: np.ndarray, jump_rel: float = 0.1, radius_px: int = 2) -> dict[str, float]:
    """Hole statistics of a sensor depth map ((H, W), metres, 0 = hole), identical for real and
    simulated frames: ``hole_fraction`` (all pixels), ``edge_band_hole_fraction`` (holes among
    pixels of the edge band, see :func:`edge_band`) and ``interior_hole_fraction`` (holes among
    :func:`interior` pixels, i.e. away from discontinuities)."""
    band = edge_band(z, jump_rel, radius_px)
    inner = interior(z, jump_rel, radius_px)
    hole = z <= 0
    return {"hole_fraction": float(hole.mean()),
            "edge_band_hole_fraction": float(hole[band].mean()) if band.any() else float("nan"),
            "interior_hole_fraction": float(hole[inner].mean()) if inner.any() else float("nan")}


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
SENSOR_FIT_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sensor_fit"


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

    x = np.asarray(Image.open(path).convert("RGB")).astype(np.float32) / 255.0
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def sensor_fit_frames(root: str | Path = SENSOR_FIT_DIR) -> list[dict[str, Any]]:
    """The real frames of a sensor-fit folder, from its ``frames.json``: one dict per depth frame
    with ``dataset``, ``depth`` (path), ``rgb`` (path of the registered colour frame or None) and
    ``K`` (3×3 float64 intrinsics of the depth frame, pixels)."""
    root = Path(root)
    spec = json.loads((root / "frames.json").read_text("utf-8"))
    out = []
    for ds, d in spec["datasets"].items():
        K = np.array([[d["fx"], 0, d["cx"]], [0, d["fy"], d["cy"]], [0, 0, 1]], np.float64)
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


def render_calibration(renderer, width: int = 320, height: int = 240, surface_passes: bool = True) -> dict[str, Any]:
    """Render a room-like calibration scene with ``renderer`` (:class:`synthgen.blender.BlenderRenderer`;
    removes its scan), seen by a camera with a Kinect-like 58° horizontal field of view:

    - a back wall at 4.5 m made of coplanar strips 0.9 m wide of diffuse albedo
      :data:`CALIBRATION_STRIP_ALBEDOS` (left to right, centred) inside a grey (0.5) wall;
    - a grey floor 1.2 m below the camera (incidence about 50–75°), and a low grey table top 0.3 m
      below the camera on the right, seen at grazing incidence (about 75–86°);
    - a polished metal sphere (radius 0.35 m at 1.5 m: specular) and a white diffuse box at 2.5 m.

    Returns:
        dict with ``depth`` (H, W) float32 planar depth (m, 0 = none), ``K`` (3×3), and with
        ``surface_passes`` also ``albedo`` and ``specularity`` ((H, W) float32, see
        :func:`surface_from_passes`) and ``strips`` ((H, W) int8: index of the wall strip, -1 elsewhere).
    """
    from .camera import intrinsics, look_at

    bpy = renderer.bpy
    renderer.clear_scan()

    def drop():
        for o in list(bpy.data.objects):
            if o.name.startswith("calib_"):
                mesh = o.data
                bpy.data.objects.remove(o, do_unlink=True)
                if mesh is not None and mesh.users == 0:
                    bpy.data.meshes.remove(mesh)
        for m in list(bpy.data.materials):
            if m.name.startswith("calib_"):
                bpy.data.materials.remove(m)

    def material(name, colour, roughness=0.5, metallic=0.0):
        m = bpy.data.materials.new(f"calib_{name}")
        m.use_nodes = True
        b = m.node_tree.nodes["Principled BSDF"]
        b.inputs["Base Color"].default_value = (*colour, 1.0)
        b.inputs["Roughness"].default_value = roughness
        b.inputs["Metallic"].default_value = metallic
        return m

    drop()
    renderer.configure(width, height, samples=1, adaptive_threshold=0, denoise=False, max_bounces=0)
    grey = material("grey", (0.5, 0.5, 0.5))
    n_strips = len(CALIBRATION_STRIP_ALBEDOS)
    strip_w = 0.9
    x0 = -strip_w * n_strips / 2
    adds = [  # (operator, kwargs, material, smooth)
        (bpy.ops.mesh.primitive_plane_add, dict(size=1, location=(0, 0, -1.2), scale=(30, 30, 1)), grey, False),
        (bpy.ops.mesh.primitive_plane_add, dict(size=1, location=(1.6, 2.45, -0.3), scale=(2.0, 3.5, 1)), grey, False),
        (bpy.ops.mesh.primitive_uv_sphere_add, dict(radius=0.35, location=(-0.4, 1.5, -0.2), segments=64, ring_count=32),
         material("metal", (0.9, 0.9, 0.9), roughness=0.1, metallic=1.0), True),
        (bpy.ops.mesh.primitive_cube_add, dict(size=0.6, location=(0.7, 2.5, 0.25), rotation=(0.3, 0.2, 0.6)),
         material("white", (0.8, 0.8, 0.8)), False),
    ]
    # back wall: grey left and right parts plus the albedo strips, all in the plane y = 4.5
    wall = [(-15.0, x0, grey)] + [(x0 + i * strip_w, x0 + (i + 1) * strip_w, material(f"strip{i}", (a, a, a)))
                                  for i, a in enumerate(CALIBRATION_STRIP_ALBEDOS)] + [(-x0, 15.0, grey)]
    for lo, hi, mat in wall:
        adds.append((bpy.ops.mesh.primitive_plane_add,
                     dict(size=1, location=((lo + hi) / 2, 4.5, 3.0), rotation=(np.pi / 2, 0, 0), scale=(hi - lo, 30, 1)),
                     mat, False))
    for i, (op, kw, mat, smooth) in enumerate(adds):
        scale = kw.pop("scale", None)  # the operators' own scale argument is ignored in background mode
        op(**kw)
        o = bpy.context.active_object
        o.name = f"calib_{i}"
        if scale is not None:
            o.scale = scale
        o.data.materials.append(mat)
        if smooth:
            bpy.ops.object.shade_smooth()
    c2w = look_at(np.array([0.0, -0.3, 0.0]), np.array([0.0, 1.0, -0.3]))
    f_mm = 36.0 / (2 * np.tan(np.radians(58.0) / 2))
    renderer.set_camera(c2w, f_mm, 36.0)
    try:
        out = renderer.render(seed=1, background_visible=False, surface_passes=surface_passes)
    finally:
        drop()
    K = intrinsics(f_mm, 36.0, width, height)
    res: dict[str, Any] = {"depth": out["depth"], "K": K}
    if surface_passes:
        res["albedo"], res["specularity"] = surface_from_passes(out["diffuse_color"], out["glossy_color"])
        # strip index from the back-projected wall points (plane y = 4.5 in world)
        H, W = out["depth"].shape
        v, u = np.mgrid[0:H, 0:W].astype(np.float64)
        z = out["depth"].astype(np.float64)
        Pc = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z, np.ones_like(z)], -1)
        Pw = Pc @ c2w.T
        on_wall = (z > 0) & (np.abs(Pw[..., 1] - 4.5) < 0.02)
        idx = np.floor((Pw[..., 0] - x0) / strip_w).astype(int)
        res["strips"] = np.where(on_wall & (idx >= 0) & (idx < n_strips), idx, -1).astype(np.int8)
    return res
