"""Equirectangular environment maps in numpy, with Cycles' conventions (no ``bpy``).

Used by the one-pass relights (:mod:`synthgen.rendering.blender.relight`): the background a camera
sees of each lighting variant's HDRI, and the importance of each cell of a variant's light dome.

Conventions (Cycles ``kernel/geom/.../projection.h`` and the Environment Texture node):

- a world direction ``d`` is looked up at ``t = Rz(rotation) d`` (the world's Mapping node rotates
  the Generated coordinate, the ray direction, about Z);
- ``u = 0.5 - atan2(t_y, t_x) / 2π``, ``v = 1 - acos(t_z) / π``; pixel ``(x, y) = (u W - 0.5,
  v H - 0.5)`` with row 0 at the bottom (Blender's pixel order); bilinear ("Linear") interpolation,
  periodic in u, clamped in v.
"""

from __future__ import annotations

import math

import numpy as np




def rot_z(deg: float) -> np.ndarray:
    """3×3 rotation about +Z by ``deg`` degrees (right-handed)."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def direction_to_uv(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Texture coordinates of unit directions ``t`` (..., 3) in the map's own frame."""
    u = 0.5 - np.arctan2(t[..., 1], t[..., 0]) / (2 * np.pi)
    v = 1.0 - np.arccos(np.clip(t[..., 2], -1.0, 1.0)) / np.pi
    return u, v


def uv_to_direction(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Unit directions (..., 3) of texture coordinates (inverse of :func:`direction_to_uv`)."""
    phi = np.pi - 2 * np.pi * np.asarray(u, float)
    theta = np.pi - np.pi * np.asarray(v, float)
    st = np.sin(theta)
    return np.stack([st * np.cos(phi), st * np.sin(phi), np.cos(theta)], axis=-1)


def lookup(img: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Bilinear radiance (..., 3) of map ``img`` (H, W, 3), rows bottom to top, at unit directions ``t``."""
    H, W = img.shape[:2]
    u, v = direction_to_uv(t)
    x = u * W - 0.5
    y = np.clip(v * H - 0.5, 0.0, H - 1.0)
    x0 = np.floor(x)
    y0 = np.minimum(np.floor(y), H - 2).astype(np.int64) if H > 1 else np.zeros(y.shape, np.int64)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None] if H > 1 else np.zeros(y.shape + (1,))
    x0 = x0.astype(np.int64) % W
    x1 = (x0 + 1) % W
    y1 = np.minimum(y0 + 1, H - 1)
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bot = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


def _blackman_harris(x: np.ndarray, width: float) -> np.ndarray:
    """Cycles' pixel filter (Blackman-Harris of total ``width`` pixels) at offsets ``x``."""
    t = 2 * np.pi * (np.asarray(x) / width + 0.5)
    w = 0.35875 - 0.48829 * np.cos(t) + 0.14128 * np.cos(2 * t) - 0.01168 * np.cos(3 * t)
    return np.where(np.abs(x) <= width / 2, w, 0.0)


def camera_background(img: np.ndarray, rotation_deg: float, K: np.ndarray, c2w_cv: np.ndarray,
                      width: int, height: int, sub: int = 4, filter_width: float = 1.5) -> np.ndarray:
    """The HDRI a pinhole camera sees, per pixel, filtered like a Cycles render.

    Each pixel averages ``sub`` × ``sub`` ray directions spread over the pixel filter's support,
    weighted by Cycles' Blackman-Harris filter of ``filter_width`` pixels (Blender's default 1.5).
    ``K`` (3×3) and ``c2w_cv`` (4×4, OpenCV axes) are the sample's camera. Returns (H, W, 3) float32
    radiance at strength 1, not yet weighted by the background's coverage.
    """
    offs = (np.arange(sub) + 0.5) / sub * filter_width - filter_width / 2
    w1 = _blackman_harris(offs, filter_width)
    Kinv = np.linalg.inv(np.asarray(K, float))
    R = np.asarray(c2w_cv, float)[:3, :3]
    M = rot_z(rotation_deg) @ R @ Kinv
    xs, ys = np.arange(width, dtype=float), np.arange(height, dtype=float)
    acc = np.zeros((height, width, 3))
    wsum = 0.0
    for oy, wy in zip(offs, w1):
        for ox, wx in zip(offs, w1):
            # OpenCV pixel centres are integers; Cycles samples continuous positions around them
            px = np.stack(np.meshgrid(xs + ox, ys + oy), axis=-1)
            rays = np.concatenate([px, np.ones((height, width, 1))], axis=-1) @ M.T
            rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
            acc += wx * wy * lookup(img, rays)
            wsum += wx * wy
    return (acc / wsum).astype(np.float32)


def cell_means(img: np.ndarray, cols: int, rows: int) -> np.ndarray:
    """Mean RGB radiance (rows, cols, 3) of a ``cols`` × ``rows`` grid of equal (u, v) cells of the
    map (row 0 at the bottom), each averaged over the map pixels whose centres fall in it."""
    H, W = img.shape[:2]
    xe = np.minimum((np.arange(cols) * W) // cols, W - 1)
    ye = np.minimum((np.arange(rows) * H) // rows, H - 1)
    s = np.add.reduceat(np.add.reduceat(img.astype(np.float64), ye, axis=0), xe, axis=1)
    nx = np.diff(np.append(xe, W))
    ny = np.diff(np.append(ye, H))
    return (s / (ny[:, None, None] * nx[None, :, None])).astype(np.float32)


def summed_area(img: np.ndarray) -> np.ndarray:
    """Summed-area table (H + 1, W + 1) of the mean RGB of ``img`` (float64)."""
    m = img.astype(np.float64).mean(-1)
    sat = np.zeros((m.shape[0] + 1, m.shape[1] + 1))
    sat[1:, 1:] = m.cumsum(0).cumsum(1)
    return sat


def rect_means(sat: np.ndarray, u0, u1, v0, v1) -> np.ndarray:
    """Mean of the map over (u, v) rectangles (arrays), from its :func:`summed_area` table; a
    rectangle narrower than a pixel reads the pixels it touches."""
    H, W = sat.shape[0] - 1, sat.shape[1] - 1
    x0 = np.clip(np.floor(np.asarray(u0) * W + 1e-9), 0, W - 1).astype(np.int64)
    x1 = np.clip(np.ceil(np.asarray(u1) * W - 1e-9), x0 + 1, W).astype(np.int64)
    y0 = np.clip(np.floor(np.asarray(v0) * H + 1e-9), 0, H - 1).astype(np.int64)
    y1 = np.clip(np.ceil(np.asarray(v1) * H - 1e-9), y0 + 1, H).astype(np.int64)
    tot = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
    return tot / ((x1 - x0) * (y1 - y0))


def quadtree_cells(img: np.ndarray, cols: int, rows: int, split_cells: int, max_level: int,
                   min_px: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive (u, v) cells of the map: a ``cols`` × ``rows`` grid whose cells are split in four
    while their power (mean radiance × solid angle) exceeds the total over ``split_cells`` and they
    are wider than ``min_px`` map pixels (at most ``max_level`` times).

    Returns ``(cells (N, 5): top cell index, a0, a1, b0, b1`` -- the cell's span inside its top cell
    in [0, 1]², a along u, b along v -- ``, means (N,))``: the leaves and their mean radiance.
    """
    H, W = img.shape[:2]
    sat = summed_area(img)
    ti, tj = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    top = (ti * cols + tj).ravel()
    cells = np.stack([top, np.zeros(top.size), np.ones(top.size), np.zeros(top.size), np.ones(top.size)], 1)
    total = None
    leaves = []
    for level in range(max_level + 1):
        t = cells[:, 0].astype(np.int64)
        i, j = t // cols, t % cols
        u0, u1 = (j + cells[:, 1]) / cols, (j + cells[:, 2]) / cols
        v0, v1 = (i + cells[:, 3]) / rows, (i + cells[:, 4]) / rows
        means = rect_means(sat, u0, u1, v0, v1)
        # solid angle of the (u, v) rectangle: 2π Δu (cos θ(v1) - cos θ(v0)) with θ = π (1 - v)
        omega = 2 * np.pi * (u1 - u0) * (np.cos(np.pi * (1 - v1)) - np.cos(np.pi * (1 - v0)))
        power = means * omega
        if total is None:
            total = float(power.sum())
        split = (power > total / split_cells) & ((u1 - u0) * W > min_px) & (level < max_level)
        leaves.append((cells[~split], means[~split]))
        if not split.any():
            break
        c = cells[split]
        am, bm = (c[:, 1] + c[:, 2]) / 2, (c[:, 3] + c[:, 4]) / 2
        kids = [np.stack([c[:, 0], a0, a1, b0, b1], 1)
                for a0, a1 in ((c[:, 1], am), (am, c[:, 2])) for b0, b1 in ((c[:, 3], bm), (bm, c[:, 4]))]
        cells = np.concatenate(kids)
    return np.concatenate([x for x, _ in leaves]), np.concatenate([m for _, m in leaves]).astype(np.float32)


def dome_geometry(cells: np.ndarray, cols: int, rows: int, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The light dome of adaptive cells (:func:`quadtree_cells`) in the map's own frame:
    ``(verts (N, 3), tris (M, 3), leaf (M,))``, triangles facing the centre, ``leaf`` the cell of
    each triangle.

    Each top cell of the ``cols`` × ``rows`` lat-long grid is a flat isosceles trapezoid with its
    corners on the sphere of ``radius``; its sub-cells are cut in that plane (bilinear in the
    corners), so the dome is a closed convex polyhedron without cracks (T-junctions lie on straight
    edges): every ray from inside crosses it exactly once. Its emission is looked up by direction,
    so its exact shape does not matter.
    """
    t = cells[:, 0].astype(np.int64)
    i, j = t // cols, t % cols
    p00, p10, p01, p11 = (uv_to_direction((j + du) / cols, (i + dv) / rows) * radius
                          for du, dv in ((0, 0), (1, 0), (0, 1), (1, 1)))

    def at(a, b):
        a, b = a[:, None], b[:, None]
        return (1 - a) * (1 - b) * p00 + a * (1 - b) * p10 + (1 - a) * b * p01 + a * b * p11

    a0, a1, b0, b1 = cells[:, 1], cells[:, 2], cells[:, 3], cells[:, 4]
    n = len(cells)
    verts = np.concatenate([at(a0, b0), at(a1, b0), at(a1, b1), at(a0, b1)])  # corner k of cell c: k n + c
    c = np.arange(n)
    tris = np.concatenate([np.stack([c, n + c, 2 * n + c], 1), np.stack([c, 2 * n + c, 3 * n + c], 1)])
    leaf = np.concatenate([c, c])
    p = verts[tris]
    nrm = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    keep = np.linalg.norm(nrm, axis=1) > 1e-9 * radius * radius  # the degenerate halves of polar cells
    outward = np.einsum("ij,ij->i", nrm, p.mean(1)) > 0
    tris[outward] = tris[outward][:, ::-1]
    return verts, tris[keep], leaf[keep]


def nee_cells(means: np.ndarray, threshold: float, max_cells: int) -> np.ndarray:
    """Cells (bool, like ``means``) that Cycles samples as lights (next-event estimation): those
    brighter than ``threshold`` × the median cell radiance, at most the ``max_cells`` brightest. The
    others emit only to rays that hit them (BSDF sampling), which costs no light-tree work."""
    flat = means.ravel()
    order = np.argsort(flat)[::-1][:max_cells]
    sel = np.zeros(flat.shape, bool)
    sel[order[flat[order] > threshold * float(np.median(flat))]] = True
    return sel.reshape(means.shape)


def bucket_strengths(means: np.ndarray, floor_fraction: float = 1e-3) -> np.ndarray:
    """Per cell, the power of two nearest (in log) to its mean radiance ``means`` (any shape),
    floored at ``floor_fraction`` of the mean so that every cell can be sampled."""
    floor = max(float(means.mean()) * floor_fraction, 1e-12)
    return np.exp2(np.round(np.log2(np.maximum(means, floor))))


def mean_radiance(img: np.ndarray) -> float:
    """Mean over the sphere (solid-angle weighted) of the map's mean RGB radiance."""
    H = img.shape[0]
    w = np.sin(np.pi * (np.arange(H) + 0.5) / H)  # a row's solid angle ∝ sin θ
    return float((img.mean(-1).mean(1) * w).sum() / w.sum())
