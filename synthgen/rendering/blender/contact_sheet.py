"""A scan's contact sheet for the preflight (``synthgen scans check --sheets DIR``): three small
Cycles renders of the placed scan, one row each (RGB | depth | mask, as the store's previews):

1. front: camera at yaw 0 (in front of the subject, which faces -Y), the whole measured part;
2. side: yaw 90 (from the subject's left), the whole measured part;
3. head: yaw 20, the head region (``head_height_m`` below the top) filling 60 % of the height.

Lit by the job's first HDRI, auto-exposed like a sample (subject median luminance 0.2), so
placement, scale, facing and materials can be judged at a glance.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...camera import look_at, orbit_position

SENSOR_MM, FOCAL_MM = 36.0, 50.0


def _distance(height_m: float, depth_m: float, fill: float) -> float:
    """Camera distance at which ``height_m`` fills ``fill`` of a square image's height."""
    half_fov = math.atan(SENSOR_MM / 2 / FOCAL_MM)
    return max(height_m / 2 / fill / math.tan(half_fov) + depth_m / 2, 0.05)


def render_sheet(r, info: dict[str, Any], hdri_path: str, out_png: str, size: int = 160,
                 samples: int = 16) -> dict[str, Any]:
    """Render the three views of the scan loaded in ``r`` (a BlenderRenderer) and write them as one
    PNG at ``out_png`` (atomic); returns ``{"path", "views": [{"name", "yaw_deg", "distance_m"}]}``."""
    from PIL import Image

    from ..postfx import apply_exposure
    from ..preview import preview_image
    from ...atomic import atomic_path

    lo, hi = np.array(info["bbox_min_m"]), np.array(info["bbox_max_m"])
    centre, ext = (lo + hi) / 2, hi - lo
    head = np.array(info["target_head_m"])
    views = [("front", centre, 0.0, _distance(ext[2], ext[1], 0.85)),
             ("side", centre, 90.0, _distance(ext[2], ext[0], 0.85)),
             ("head", head, 20.0, _distance(info["head_region_height_m"], 0.2, 0.6))]
    r.set_hdri(hdri_path, 0.0, 1.0)
    r.configure(size, size, samples, 0.0, True, 4)
    rows, out = [], []
    for name, target, yaw, dist in views:
        pos = orbit_position(target, yaw, 5.0, dist)
        r.set_camera(look_at(pos, target), FOCAL_MM, SENSOR_MM)
        px = r.render(0, background_visible=True)
        apply_exposure(px["rgb"], px["mask"], True, 0.2, 0.0)
        rows.append(preview_image(px["rgb"], px["depth"], px["mask"]))
        out.append({"name": name, "yaw_deg": yaw, "distance_m": round(float(dist), 4)})
    with atomic_path(out_png) as tmp:
        Image.fromarray(np.concatenate(rows, axis=0)).save(tmp, format="PNG")
    return {"path": str(out_png), "views": out}
