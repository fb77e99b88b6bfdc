"""Where a sample's camera goes: the target on the loaded subject, the distance (given, or from the
head's fraction of the image height), intrinsics K and the camera-to-world extrinsics (OpenCV
convention: x right, y down, z forward)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..camera import intrinsics, look_at, orbit_position
from .config import Job
from .sampling import SampleParams, distance_for_fraction
from .subject import SubjectInfo


def camera_for(job: Job, params: SampleParams, scan_info: SubjectInfo) -> dict[str, Any]:
    """Resolve the camera of a sample: target point, distance, K and camera-to-world (OpenCV).

    Args:
        job: the job (its camera profile and render size).
        params: the sample's parameters (:func:`.sampling.sample_params`).
        scan_info: the loaded (and posed) subject (:class:`.subject.SubjectInfo`).

    Returns a dict with ``target_m`` (xyz), ``distance_m``, ``K`` (3×3) and ``camera_to_world`` (4×4),
    all numpy float64 except the distance.
    """
    cfg = job.config
    cam = job.camera_config(params.get("camera_profile"))
    W, H = cfg.render.width, cfg.render.height
    if cam.target == "head":
        target = np.array(scan_info["target_head_m"])
        region_h = scan_info["head_region_height_m"]
    elif cam.target == "center":
        target = np.array(scan_info["target_center_m"])
        region_h = scan_info["bbox_max_m"][2] - scan_info["bbox_min_m"][2]
    else:
        target = np.array(cam.target, float)
        region_h = scan_info["head_region_height_m"]
    target = target + np.array(params["target_jitter_m"])
    dist = params["distance_m"]
    if dist is None:
        dist = distance_for_fraction(params["focal_length_mm"], params["sensor_width_mm"], W, H,
                                     region_h, params["subject_fraction"])
    pos = orbit_position(target, params["yaw_deg"], params["pitch_deg"], dist)
    c2w = look_at(pos, target, params["roll_deg"])
    K = intrinsics(params["focal_length_mm"], params["sensor_width_mm"], W, H)
    return {"target_m": target, "distance_m": float(dist), "K": K, "camera_to_world": c2w}
