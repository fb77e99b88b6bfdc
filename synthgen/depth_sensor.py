"""Depth-sensor simulation (structured-light Kinect v1 / PrimeSense class) and the statistics used to
fit it to real captures.

Model, applied to a clean planar z-depth map ``z`` (H, W) float32 metres, 0 = no surface:

1. **Discontinuity holes.** A pixel lies in the *edge band* when the valid depths in its
   ``(2 r + 1)²`` window (``r = edge_radius_px``) differ by more than ``edge_jump_rel`` of the
   nearest one. Band pixels become holes with probability ``edge_hole_prob`` (structured-light
   shadowing and mixed pixels at silhouettes).
2. **Grazing holes.** The surface normal is estimated from the back-projected depth (central
   differences, intrinsics ``K``); outside the edge band, where the angle between the normal and the
   viewing ray exceeds ``grazing_deg`` the pixel becomes a hole (the projected pattern is too stretched to decode).
3. **Dropout.** Any other pixel becomes a hole with probability ``dropout`` (dark or specular spots).
4. **Noise.** ``z += N(0, sigma(z))`` with ``sigma = sigma_a_m + sigma_b_per_m * z²`` metres; the z²
   growth is that of triangulation with a fixed baseline (Khoshelham & Elberink, "Accuracy and
   Resolution of Kinect Depth Data for Indoor Mapping Applications", Sensors 2012).
5. **Range and quantisation.** Depths outside ``[min_depth_m, max_depth_m]`` become 0; the rest is
   rounded to ``quantum_m`` (1 mm: a 16-bit millimetre depth image).

The default parameters were fitted by ``benchmarks/depth_sensor_fit.py`` to the Kinect v1 frames in
``tests/fixtures/sensor_fit`` (TUM RGB-D fr1/xyz and slambook2); see ``docs/sample_format.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view



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


def simulate(z: np.ndarray, K: np.ndarray, rng: np.random.Generator, *, sigma_a_m: float,
             sigma_b_per_m: float, edge_jump_rel: float, edge_radius_px: int, edge_hole_prob: float,
             grazing_deg: float, dropout: float, min_depth_m: float, max_depth_m: float,
             quantum_m: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Simulate a depth sensor on clean planar depth ``z`` ((H, W) float32 m, 0 = none).

    Returns ``(sensor_depth, stats)``: (H, W) float32 metres with 0 for holes, and a dict with the
    hole fractions by cause (over pixels with a clean depth).
    """
    z = np.asarray(z, np.float32)
    valid = z > 0
    band = edge_band(z, edge_jump_rel, edge_radius_px) & valid
    edge_holes = band & (rng.random(z.shape) < edge_hole_prob)
    ang = incidence_deg(z, K)
    grazing = valid & ~band & (np.nan_to_num(ang, nan=0.0) > grazing_deg)  # normals across edges are meaningless
    drop = valid & (rng.random(z.shape) < dropout)
    sigma = sigma_a_m + sigma_b_per_m * z.astype(np.float64) ** 2
    noisy = z + rng.standard_normal(z.shape) * sigma
    if quantum_m > 0:
        noisy = np.round(noisy / quantum_m) * quantum_m
    holes = ~valid | edge_holes | grazing | drop | (noisy < min_depth_m) | (noisy > max_depth_m)
    out = np.where(holes, 0.0, noisy).astype(np.float32)
    n = max(int(valid.sum()), 1)
    stats = {"hole_fraction": float((holes & valid).sum() / n), "edge_holes": float(edge_holes.sum() / n),
             "grazing_holes": float(grazing.sum() / n), "dropout_holes": float(drop.sum() / n)}
    return out, stats


# ----------------------------------------------------------------------------- statistics
def hole_statistics(z: np.ndarray, jump_rel: float = 0.1, radius_px: int = 2) -> dict[str, float]:
    """Hole statistics of a sensor depth map ((H, W), metres, 0 = hole), identical for real and
    simulated frames: ``hole_fraction`` (all pixels), ``edge_band_hole_fraction`` (holes among
    pixels of the edge band, see :func:`edge_band`) and ``interior_hole_fraction`` (holes among
    pixels whose window holds valid depths within ``jump_rel`` of each other, i.e. away from
    discontinuities)."""
    band = edge_band(z, jump_rel, radius_px)
    lo, hi = _window_minmax(z, radius_px)
    with np.errstate(invalid="ignore"):
        interior = np.isfinite(lo) & ~band
    hole = z <= 0
    return {"hole_fraction": float(hole.mean()),
            "edge_band_hole_fraction": float(hole[band].mean()) if band.any() else float("nan"),
            "interior_hole_fraction": float(hole[interior].mean()) if interior.any() else float("nan")}


def noise_vs_depth(z: np.ndarray, bin_m: float = 0.25, min_count: int = 500) -> list[tuple[float, float, int]]:
    """Per depth bin ``(bin centre m, sigma m, pixels)`` of the sensor noise, estimated from the
    horizontal second difference ``r = z(u) - (z(u-1) + z(u+1)) / 2`` of smooth valid pixels
    (``|r| < 2 %`` of z, which removes planar trends and edges): ``sigma = rms(r) / sqrt(1.5)``
    (``var r = 1.5 sigma²`` for independent noise)."""
    z = np.asarray(z, np.float64)
    c, l, r = z[:, 1:-1], z[:, :-2], z[:, 2:]
    ok = (c > 0) & (l > 0) & (r > 0)
    res = c - (l + r) / 2
    ok &= np.abs(res) < 0.02 * c
    zc, rc = c[ok], res[ok]
    out = []
    for lo in np.arange(0.0, 8.0, bin_m):
        sel = (zc >= lo) & (zc < lo + bin_m)
        if sel.sum() >= min_count:
            out.append((float(lo + bin_m / 2), float(np.sqrt(np.mean(rc[sel] ** 2) / 1.5)), int(sel.sum())))
    return out


def fit_sigma(bins: list[tuple[float, float, int]]) -> tuple[float, float]:
    """Least-squares ``sigma = a + b z²`` through per-bin ``(z, sigma, count)``, weighted by count;
    returns ``(a, b)`` (m, 1/m)."""
    z = np.array([b[0] for b in bins])
    s = np.array([b[1] for b in bins])
    w = np.sqrt(np.array([b[2] for b in bins], float))
    A = np.stack([np.ones_like(z), z ** 2], 1) * w[:, None]
    a, b = np.linalg.lstsq(A, s * w, rcond=None)[0]
    return float(a), float(b)


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


def render_calibration_scene(renderer, width: int = 320, height: int = 240) -> tuple[np.ndarray, np.ndarray]:
    """Render a room-like calibration scene with ``renderer`` (:class:`synthgen.blender.BlenderRenderer`;
    removes its scan): a back wall at 4.5 m, a floor, and a sphere and a box between 1 and 2.5 m,
    seen by a camera with a Kinect-like 58° horizontal field of view. Returns ``(depth, K)``:
    (H, W) float32 planar depth in metres and the 3×3 intrinsics."""
    from .camera import intrinsics, look_at

    bpy = renderer.bpy
    renderer.clear_scan()
    for o in list(bpy.data.objects):
        if o.name.startswith("calib_"):
            bpy.data.objects.remove(o, do_unlink=True)
    renderer.configure(width, height, samples=1, adaptive_threshold=0, denoise=False, max_bounces=0)
    adds = [(bpy.ops.mesh.primitive_plane_add, dict(size=30, location=(0, 4.5, 0), rotation=(np.pi / 2, 0, 0))),
            (bpy.ops.mesh.primitive_plane_add, dict(size=30, location=(0, 0, -1.2))),
            (bpy.ops.mesh.primitive_uv_sphere_add, dict(radius=0.35, location=(-0.4, 1.5, -0.2), segments=64, ring_count=32)),
            (bpy.ops.mesh.primitive_cube_add, dict(size=0.6, location=(0.7, 2.5, 0.1), rotation=(0.3, 0.2, 0.6)))]
    for i, (op, kw) in enumerate(adds):
        op(**kw)
        bpy.context.active_object.name = f"calib_{i}"
    bpy.ops.object.shade_smooth()
    c2w = look_at(np.array([0.0, -0.3, 0.0]), np.array([0.0, 1.0, -0.3]))
    f_mm = 36.0 / (2 * np.tan(np.radians(58.0) / 2))
    renderer.set_camera(c2w, f_mm, 36.0)
    out = renderer.render(seed=1, background_visible=False)
    for o in list(bpy.data.objects):
        if o.name.startswith("calib_"):
            bpy.data.objects.remove(o, do_unlink=True)
    return out["depth"], intrinsics(f_mm, 36.0, width, height)
