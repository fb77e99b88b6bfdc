"""Registering a depth map from one camera onto another camera's pixel grid by reprojection.

For every valid depth pixel ``(u, v)`` with planar depth ``z`` in the source camera (intrinsics
``K_src``, OpenCV pixel centres): the 3D point ``X = z * K_src^-1 [u, v, 1]^T`` is moved into the
target camera, ``X' = R X + t`` (``R``, ``t``: source-to-target rigid transform, metres), and
projected with ``K_dst``; it lands on the nearest target pixel, and where several points land on
the same pixel the nearest one (smallest ``z'``) wins (z-buffer). Target pixels that no point
reaches are invalid (0). The stored value is the planar depth ``z'`` in the *target* camera.
Lens distortion is not modelled (callers record that).
"""

from __future__ import annotations

import numpy as np


def register_depth(depth: np.ndarray, K_src: np.ndarray, K_dst: np.ndarray, R: np.ndarray, t: np.ndarray,
                   out_shape: tuple[int, int]) -> np.ndarray:
    """Reproject ``depth`` ``(H, W)`` float metres (0 = invalid) from the source camera onto a
    ``out_shape`` grid of the target camera. Returns ``(H', W')`` float32 planar depth, 0 = invalid."""
    h, w = depth.shape
    v, u = np.nonzero(depth > 0)
    z = depth[v, u].astype(np.float64)
    Ki = np.linalg.inv(np.asarray(K_src, float))
    pix = np.stack([u, v, np.ones_like(u)], 0).astype(np.float64)
    X = (Ki @ pix) * z
    Xc = np.asarray(R, float) @ X + np.asarray(t, float).reshape(3, 1)
    front = Xc[2] > 1e-6
    Xc = Xc[:, front]
    proj = np.asarray(K_dst, float) @ Xc
    uc = np.rint(proj[0] / proj[2]).astype(np.int64)
    vc = np.rint(proj[1] / proj[2]).astype(np.int64)
    H, W = out_shape
    inside = (uc >= 0) & (uc < W) & (vc >= 0) & (vc < H)
    zc = Xc[2, inside].astype(np.float32)
    flat = vc[inside] * W + uc[inside]
    out = np.full(H * W, np.inf, np.float32)
    np.minimum.at(out, flat, zc)
    out[~np.isfinite(out)] = 0.0
    return out.reshape(H, W)


def project_point(K: np.ndarray, X: np.ndarray) -> tuple[float, float]:
    """Pixel coordinates (OpenCV centres) of camera-frame point ``X``."""
    p = np.asarray(K, float) @ np.asarray(X, float)
    return float(p[0] / p[2]), float(p[1] / p[2])
