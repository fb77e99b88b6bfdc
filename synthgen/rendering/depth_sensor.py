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

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from ..colour import REC709_LUMA, luminance  # noqa: F401 (re-exported)

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



