"""Rendering one sample: parameters -> Blender -> framing check -> files. Used by Ray actors and tests.

Workers write their samples straight into the output store (which must therefore be a path every
worker can reach: a local folder on one machine, a shared filesystem on a cluster) and return only
the small record to the driver. Each file is written atomically and the JSON record last.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .camera import intrinsics, look_at, orbit_position
from .config import Job, content_hash
from .contract import write_sample
from .sampling import distance_for_fraction, sample_key, sample_params

log = logging.getLogger("synthgen.worker")


class FramingError(RuntimeError):
    """No attempt produced a subject coverage inside the configured range."""


def camera_for(job: Job, params: dict[str, Any], scan_info: dict[str, Any]) -> dict[str, Any]:
    """Resolve the camera of a sample: target point, distance, K and camera-to-world (OpenCV).

    Returns a dict with ``target_m`` (xyz), ``distance_m``, ``K`` (3×3) and ``camera_to_world`` (4×4),
    all numpy float64 except the distance.
    """
    cfg = job.config
    cam = cfg.camera
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


REC709_LUMA = (0.2126, 0.7152, 0.0722)


def apply_exposure(rgb: np.ndarray, mask: np.ndarray, auto: bool, target: float, ev: float) -> dict[str, Any]:
    """Scale linear ``rgb`` (H, W, 3) in place like a camera's auto exposure.

    ``factor = target / median(Y of subject pixels) * 2**ev`` with Rec.709 luminance
    ``Y = 0.2126 R + 0.7152 G + 0.0722 B`` over pixels with mask > 0.5. The scene is lit only by the
    HDRI and rendering is linear in light, so this equals rendering with HDRI strength × factor.
    Returns the record section: mode, target, EV offset, measured median and factor.
    """
    if not auto:
        return {"mode": "off", "factor": 1.0}
    sel = mask > 0.5
    lum = rgb[sel] @ np.asarray(REC709_LUMA, np.float32) if sel.any() else np.zeros(0)
    median = float(np.median(lum)) if lum.size else 0.0
    factor = float(target / median * 2.0 ** ev) if median > 1e-8 else 1.0
    rgb *= np.float32(factor)
    return {"mode": "auto", "target_median_luminance": target, "ev": ev,
            "subject_median_luminance_before": median, "factor": factor}


def render_sample(renderer, job: Job, index: int, out_dir: str | os.PathLike,
                  previews: bool = False, config_hash: str | None = None) -> dict[str, Any]:
    """Render sample ``index`` of ``job`` into ``out_dir``, re-sampling until the framing fits.

    ``config_hash`` (default: :func:`synthgen.config.content_hash` of ``job``) is stored in the
    record as ``render.config_hash``; a resumed run only accepts samples carrying its own hash.

    Returns:
        ``{"key", "record", "timings": {"setup_s", "render_s", "write_s"}, "resamples"}``.

    Raises:
        FramingError: coverage stayed outside [coverage_min, coverage_max] for every attempt.
        ScanImportError: the scan cannot be imported.
    """
    from .blender import blender_version

    cfg = job.config
    rs = cfg.render
    key = sample_key(job, index)
    timings = {"setup_s": 0.0, "render_s": 0.0, "write_s": 0.0}
    rejected = []
    scans = {s.id: s for s in job.scans}
    hdris = {h.id: h for h in job.hdris}
    for attempt in range(cfg.framing.max_resamples + 1):
        t0 = time.perf_counter()
        p = sample_params(job, index, attempt)
        scan = scans[p["scan_id"]]
        info = renderer.load_scan(scan)
        hdri = hdris[p["hdri_id"]]
        renderer.set_hdri(hdri.path, p["hdri_rotation_deg"], p["hdri_strength"])
        cam = camera_for(job, p, info)
        renderer.set_camera(cam["camera_to_world"], p["focal_length_mm"], p["sensor_width_mm"])
        renderer.configure(rs.width, rs.height, rs.samples, rs.adaptive_threshold, rs.denoise, rs.max_bounces)
        timings["setup_s"] += time.perf_counter() - t0
        out = renderer.render(p["cycles_seed"], background_visible=(p["background"] == "visible"))
        timings["render_s"] += out["seconds"]
        timings["setup_s"] += 0.0
        coverage = float(out["mask"].mean())
        if cfg.framing.coverage_min <= coverage <= cfg.framing.coverage_max:
            break
        rejected.append({"attempt": attempt, "coverage": coverage})
    else:
        raise FramingError(
            f"sample {key}: subject coverage stayed outside [{cfg.framing.coverage_min}, "
            f"{cfg.framing.coverage_max}] in {len(rejected)} attempts (last {coverage:.4f}); "
            "check camera.distance_m / subject_fraction and framing.*")

    t0 = time.perf_counter()
    exposure = apply_exposure(out["rgb"], out["mask"], rs.auto_exposure, rs.exposure_target, p["exposure_ev"])
    cfg_dir = Path(job.config_path).parent
    record = {
        "source": "synthetic",
        "subject_id": scan.id,
        "camera": {
            "model": "pinhole",
            "convention": "opencv",
            "pixel_centre": "integer",
            "K": cam["K"].tolist(),
            "camera_to_world": cam["camera_to_world"].tolist(),
            "focal_length_mm": p["focal_length_mm"],
            "sensor_width_mm": p["sensor_width_mm"],
            "sensor_fit": "horizontal",
            "fov_x_deg": p["fov_x_deg"],
            "fov_y_deg": p["fov_y_deg"],
        },
        "depth": {"kind": "planar_z", "units": "metres", "metric": True, "invalid_value": 0.0,
                  "anti_aliased": False},
        "mask": {"kind": "subject_coverage", "source": "render_alpha", "anti_aliased": True,
                 "coverage": coverage},
        "render": {
            "job": cfg.name,
            "seed": cfg.seed,
            "index": index,
            "attempt": p["attempt"],
            "resamples": len(rejected),
            "rejected": rejected,
            "params": p,
            "camera": {"target_m": cam["target_m"].tolist(), "distance_m": cam["distance_m"],
                       "target_mode": cfg.camera.target if isinstance(cfg.camera.target, str) else "point"},
            "scan": {"id": scan.id, "file": os.path.relpath(scan.path, cfg_dir),
                     "scale_applied": info["scale_applied"], "size": scan.size.model_dump(exclude_none=True),
                     "bbox_min_m": info["bbox_min_m"], "bbox_max_m": info["bbox_max_m"],
                     "warnings": info["warnings"]},
            "hdri": {"id": hdri.id, "file": os.path.relpath(hdri.path, cfg_dir),
                     "rotation_deg": p["hdri_rotation_deg"], "strength": p["hdri_strength"],
                     "effective_strength": p["hdri_strength"] * exposure["factor"],
                     "background": p["background"]},
            "exposure": exposure,
            "settings": {"engine": "CYCLES", "device": rs.device, "samples": rs.samples,
                         "adaptive_threshold": rs.adaptive_threshold, "denoise": rs.denoise,
                         "denoiser": "OPENIMAGEDENOISE" if rs.denoise else None,
                         "max_bounces": rs.max_bounces, "cycles_seed": p["cycles_seed"],
                         "width": rs.width, "height": rs.height},
            "versions": {"synthgen": __version__, "blender": blender_version()},
            "config_hash": config_hash or content_hash(job),
        },
        "synthgen_version": __version__,
    }
    rec = write_sample(out_dir, key, out["rgb"], out["depth"], out["mask"], record)
    if previews:
        from .preview import save_preview

        save_preview(Path(out_dir) / "_meta" / "previews" / f"{key}.png", out["rgb"], out["depth"], out["mask"])
    timings["write_s"] = time.perf_counter() - t0
    return {"key": key, "record": rec, "timings": timings, "resamples": len(rejected)}
