"""Pinhole camera maths in the OpenCV convention (x right, y down, z forward). No bpy here.

Formulas:
- Horizontal sensor fit: ``fx = f_mm * W / sensor_width_mm``; square pixels, so ``fy = fx``
  and the sensor height is ``sensor_width_mm * H / W``.
- Field of view: ``fov_x = 2 * atan(sensor_width_mm / (2 * f_mm))``,
  ``fov_y = 2 * atan(H / (2 * fy))``.
- Pixel centres: the centre of the top-left pixel is (0, 0) (OpenCV), so a centred principal
  point is ``cx = (W - 1) / 2``, ``cy = (H - 1) / 2``. Blender's image plane spans [0, W] with
  pixel i covering [i, i+1], which is the same geometry shifted by half a pixel.
- Blender cameras look down -Z with +Y up; OpenCV camera axes are Blender's with Y and Z flipped:
  ``c2w_blender = c2w_opencv @ diag(1, -1, -1, 1)``.
"""

from __future__ import annotations

import math

import numpy as np

CV_TO_BLENDER = np.diag([1.0, -1.0, -1.0, 1.0])
WORLD_UP = np.array([0.0, 0.0, 1.0])


def focal_from_fov(fov_x_deg: float, sensor_width_mm: float) -> float:
    """Focal length in mm for a horizontal field of view in degrees."""
    return sensor_width_mm / (2.0 * math.tan(math.radians(fov_x_deg) / 2.0))


def fov_from_focal(f_mm: float, sensor_mm: float) -> float:
    """Field of view in degrees across a sensor extent of ``sensor_mm``."""
    return math.degrees(2.0 * math.atan(sensor_mm / (2.0 * f_mm)))


def make_K(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """3x3 OpenCV intrinsics matrix in pixels."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def scale_K(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Intrinsics for an image resized by ``(sx, sy)`` (new/old size), OpenCV integer pixel centres:
    ``f' = f*s`` and ``c' = (c + 0.5)*s - 0.5``."""
    K2 = np.array(K, dtype=float)
    K2[0, 0] *= sx
    K2[1, 1] *= sy
    K2[0, 2] = (K2[0, 2] + 0.5) * sx - 0.5
    K2[1, 2] = (K2[1, 2] + 0.5) * sy - 0.5
    return K2


DEFAULT_EQUIV_FOCAL_MM = 26.0
"""Documented default used only with ``--default-intrinsics``: a 26 mm full-frame-equivalent lens
(typical phone main camera), principal point at the image centre, square pixels."""


def default_K(width: int, height: int, equiv_mm: float = DEFAULT_EQUIV_FOCAL_MM) -> np.ndarray:
    """Intrinsics from a 35 mm-equivalent focal length (CIPA DC-008: referred to the 43.27 mm
    full-frame diagonal): ``f_px = f_eq / 43.2666 * sqrt(W^2 + H^2)``, centred principal point
    ``((W-1)/2, (H-1)/2)``."""
    f = equiv_mm / 43.2666 * float(np.hypot(width, height))
    return make_K(f, f, (width - 1) / 2.0, (height - 1) / 2.0)


def intrinsics(f_mm: float, sensor_width_mm: float, width: int, height: int) -> np.ndarray:
    """3×3 K in pixels (float64) for horizontal sensor fit, square pixels, centred principal point.

    Raises:
        ValueError: non-positive focal length, sensor width or image size.
    """
    if f_mm <= 0 or sensor_width_mm <= 0 or width <= 0 or height <= 0:
        raise ValueError("focal length, sensor width and image size must be positive")
    fx = f_mm * width / sensor_width_mm
    return make_K(fx, fx, (width - 1) / 2.0, (height - 1) / 2.0)


def look_at(position: np.ndarray, target: np.ndarray, roll_deg: float = 0.0) -> np.ndarray:
    """4×4 camera-to-world (OpenCV axes) for a camera at ``position`` looking at ``target``.

    World is Z-up (Blender). The image x axis is horizontal (perpendicular to world up) before
    ``roll_deg`` rotates the camera about its optical axis (positive = clockwise in the image).

    Raises:
        ValueError: ``position`` equals ``target`` or the view direction is vertical.
    """
    position = np.asarray(position, float)
    fwd = np.asarray(target, float) - position
    n = np.linalg.norm(fwd)
    if n < 1e-9:
        raise ValueError("camera position equals its target")
    z = fwd / n
    x = np.cross(z, WORLD_UP)
    if np.linalg.norm(x) < 1e-6:
        raise ValueError("camera looks straight up or down; pitch must stay within (-90, 90)")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    r = math.radians(roll_deg)
    x, y = math.cos(r) * x + math.sin(r) * y, -math.sin(r) * x + math.cos(r) * y
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, position
    return c2w


def orbit_position(target: np.ndarray, yaw_deg: float, pitch_deg: float, distance_m: float) -> np.ndarray:
    """Camera position on a sphere around ``target``.

    The subject faces -Y (Blender's front view): yaw 0, pitch 0 puts the camera at
    ``target + (0, -distance, 0)``. Positive yaw orbits counter-clockwise seen from above
    (towards +X, the subject's left); positive pitch raises the camera.
    """
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    d = np.array([math.sin(yaw) * math.cos(pitch), -math.cos(yaw) * math.cos(pitch), math.sin(pitch)])
    return np.asarray(target, float) + distance_m * d


def project(points_world: np.ndarray, K: np.ndarray, c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project N×3 world points; return (N×2 pixel coordinates (u, v), N camera-z depths in metres)."""
    w2c = np.linalg.inv(c2w)
    pc = points_world @ w2c[:3, :3].T + w2c[:3, 3]
    z = pc[:, 2]
    uv = (pc @ K.T)[:, :2] / z[:, None]
    return uv, z


def _axis_angle_matrix(rotvec: np.ndarray) -> np.ndarray:
    """3×3 rotation for a rotation vector (axis × angle in radians), Rodrigues' formula."""
    theta = float(np.linalg.norm(rotvec))
    if theta < 1e-15:
        return np.eye(3)
    k = np.asarray(rotvec, float) / theta
    Kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(theta) * Kx + (1.0 - math.cos(theta)) * (Kx @ Kx)


def shake_pose(c2w: np.ndarray, angular_velocity_deg_s, translation_velocity_m_s, t_s: float) -> np.ndarray:
    """Camera-to-world (4×4, OpenCV axes, metres) ``t_s`` seconds after ``c2w`` for a camera moving
    at constant velocities given in its own axes (x right, y down, z forward):
    ``c2w(t) = c2w @ [[R(ω t), v t], [0, 1]]`` with ``R`` the rotation by the vector ``ω t``
    (Rodrigues' formula; ω in deg/s, v in m/s). ``t_s`` may be negative."""
    d = np.eye(4)
    d[:3, :3] = _axis_angle_matrix(np.radians(np.asarray(angular_velocity_deg_s, float)) * t_s)
    d[:3, 3] = np.asarray(translation_velocity_m_s, float) * t_s
    return np.asarray(c2w, float) @ d


def shake_blur_px(K: np.ndarray, distance_m: float, angular_velocity_deg_s, translation_velocity_m_s,
                  shutter_s: float) -> float:
    """Length in pixels of the blur streak at the principal point for a static point ``distance_m``
    in front of the camera, moving as in :func:`shake_pose` for ``shutter_s`` seconds.

    A static point P in camera coordinates moves as ``dP/dt = -v - ω × P``; at ``P = (0, 0, d)``
    the image velocity is ``du/dt = -fx (v_x / d + ω_y)``, ``dv/dt = fy (ω_x - v_y / d)`` (pixels/s;
    first-order, the usual image-motion equations, e.g. Longuet-Higgins & Prazdny 1980).
    """
    w = np.radians(np.asarray(angular_velocity_deg_s, float))
    v = np.asarray(translation_velocity_m_s, float)
    du = -K[0, 0] * (v[0] / distance_m + w[1])
    dv = K[1, 1] * (w[0] - v[1] / distance_m)
    return float(math.hypot(du, dv) * shutter_s)
