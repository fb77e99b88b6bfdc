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

from .. import __version__
from ..camera import intrinsics, look_at, orbit_position, shake_blur_px
from ..contract import write_sample
from ..errors import FramingError  # noqa: F401 (re-exported)
from .config import Job, content_hash
from .sampling import distance_for_fraction, sample_key, sample_params
from ..colour import REC709_LUMA

log = logging.getLogger("synthgen.worker")


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


MAX_EXPOSURE_FACTOR = 256.0
"""Auto exposure changes the image by at most ±8 stops (a black or empty subject would ask for more)."""


def apply_exposure(rgb: np.ndarray, mask: np.ndarray, auto: bool, target: float, ev: float) -> dict[str, Any]:
    """Scale linear ``rgb`` (H, W, 3) in place like a camera's auto exposure.

    ``factor = target / median(Y of subject pixels) * 2**ev`` with Rec.709 luminance
    ``Y = 0.2126 R + 0.7152 G + 0.0722 B`` over pixels with mask > 0.5. The scene is lit only by the
    HDRI and rendering is linear in light, so this equals rendering with HDRI strength × factor.
    The factor is clamped to [1/256, 256] (±8 stops; ``clamped`` says so). Returns the record
    section: mode, target, EV offset, measured median, factor and whether it was clamped.
    """
    if not auto:
        return {"mode": "off", "factor": 1.0}
    sel = mask > 0.5
    lum = rgb[sel] @ REC709_LUMA if sel.any() else np.zeros(0)
    median = float(np.median(lum)) if lum.size else 0.0
    wanted = float(target / median * 2.0 ** ev) if median > 1e-8 else 1.0
    factor = float(np.clip(wanted, 1.0 / MAX_EXPOSURE_FACTOR, MAX_EXPOSURE_FACTOR))
    rgb *= np.float32(factor)
    return {"mode": "auto", "target_median_luminance": target, "ev": ev,
            "subject_median_luminance_before": median, "factor": factor, "clamped": factor != wanted}


QUALITY_KEYS = ("diffuse_bounces", "glossy_bounces", "transmission_bounces", "transparent_bounces",
                "env_map_resolution", "light_tree", "denoiser_prepass", "denoiser_prefilter", "denoiser_quality",
                "clamp_indirect", "persistent_data")


def quality_settings(rs) -> dict[str, Any]:
    """The Cycles quality settings of :class:`synthgen.config.RenderSettings` beyond samples,
    adaptive threshold, denoise and max bounces (keyword arguments of ``BlenderRenderer.configure``)."""
    return {k: getattr(rs, k) for k in QUALITY_KEYS}


def render_sample(renderer, job: Job, index: int, out_dir: str | os.PathLike,
                  previews: bool = False, config_hash: str | None = None) -> dict[str, Any]:
    """Render sample ``index`` of ``job`` into ``out_dir``: :func:`render_passes` then :func:`finish_sample`.

    Returns and raises as those two do; must run on the process's main thread (Blender operators).
    """
    return finish_sample(render_passes(renderer, job, index), out_dir, previews=previews, config_hash=config_hash)


def render_passes(renderer, job: Job, index: int) -> dict[str, Any]:
    """The Blender part of sample ``index``: load the subject, set up the scene and render, re-sampling
    the parameters until the framing fits.

    Must run on the process's main thread: Blender's importers and mode switches fail their
    ``poll()`` anywhere else. Everything after it (:func:`finish_sample`) is plain numpy and file
    I/O and may run on another thread, so a worker overlaps writing one sample with rendering the next.

    Returns:
        an opaque dict for :func:`finish_sample` (job, index, key, parameters, camera, subject
        info, the passes' arrays, record sections and timings).

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
    blender = blender_version()
    for attempt in range(cfg.framing.max_resamples + 1):
        t0 = time.perf_counter()
        p = sample_params(job, index, attempt)
        scan = scans[p["scan_id"]]
        info = renderer.load_scan(scan, rest_pose=cfg.pose.enabled, appearance=cfg.appearance.enabled,
                                  keep_animation=cfg.pose.enabled and cfg.pose.source == "animation")
        variation: dict[str, Any] = {}
        if cfg.pose.enabled:
            variation["pose"] = renderer.set_pose(cfg.pose.joints, p["pose"])
            info = dict(info, target_head_m=renderer.posed_point(info["target_head_m"]),
                        target_center_m=renderer.posed_point(info["target_center_m"]))
        if cfg.appearance.enabled:
            a = p["appearance"]
            variation["appearance"] = renderer.set_appearance(
                a["hue"], a["saturation"], a["value"], a["roughness"], a["skin_tone_rgb"],
                cfg.appearance.subsurface_weight)
        hdri = hdris[p["hdri_id"]]
        renderer.set_hdri(hdri.path, p["hdri_rotation_deg"], p["hdri_strength"])
        cam = camera_for(job, p, info)
        if "area_lights" in p:
            renderer.set_area_lights(p["area_lights"], cam["target_m"].tolist())
        renderer.set_camera(cam["camera_to_world"], p["focal_length_mm"], p["sensor_width_mm"])
        # relights of a view must share the mask: adaptive sampling would make it light-dependent
        adaptive = rs.adaptive_threshold if cfg.relights_per_view == 1 else 0.0
        renderer.configure(rs.width, rs.height, rs.samples, adaptive, rs.denoise, rs.max_bounces,
                           **quality_settings(rs))
        timings["setup_s"] += time.perf_counter() - t0
        out = renderer.render(p["cycles_seed"], background_visible=(p["background"] == "visible"),
                              surface_passes=cfg.depth_sensor.enabled)
        timings["render_s"] += out["seconds"]
        coverage = float(out["mask"].mean())
        if cfg.framing.coverage_min <= coverage <= cfg.framing.coverage_max:
            break
        rejected.append({"attempt": attempt, "coverage": coverage})
    else:
        raise FramingError(
            f"sample {key}: subject coverage stayed outside [{cfg.framing.coverage_min}, "
            f"{cfg.framing.coverage_max}] in {len(rejected)} attempts (last {coverage:.4f}); "
            "check camera.distance_m / subject_fraction and framing.*")

    realism: dict[str, Any] = {}
    cr = p.get("camera_realism", {})
    mb = cr.get("motion_blur")
    if "f_stop" in cr or mb:
        # one extra pass for the RGB only (depth of field and motion blur together): depth and mask
        # stay the clean pinhole ground truth of the first pass
        try:
            if "f_stop" in cr:
                renderer.set_dof(cr["f_stop"], cam["distance_m"])
            if mb:
                renderer.set_motion_blur(cam["camera_to_world"], mb["shutter_s"], mb["angular_velocity_deg_s"],
                                         mb["translation_velocity_m_s"])
            lens_out = renderer.render(p["cycles_seed"], background_visible=(p["background"] == "visible"))
        finally:
            renderer.set_dof(None)
            renderer.clear_motion_blur()
        timings["render_s"] += lens_out["seconds"]
        out["rgb"] = lens_out["rgb"]
    if "f_stop" in cr:
        realism["dof"] = {"f_stop": cr["f_stop"], "focus_distance_m": cam["distance_m"],
                          "aperture_diameter_mm": p["focal_length_mm"] / cr["f_stop"], "model": "cycles_thin_lens"}
    if mb:
        w, v, T = mb["angular_velocity_deg_s"], mb["translation_velocity_m_s"], mb["shutter_s"]
        realism["motion_blur"] = {
            "model": "camera_shake_constant_velocity", "renderer": "cycles_motion_blur",
            "shutter_s": T, "shutter_position": "centre",
            "axes": "camera_opencv",
            "angular_velocity_deg_s": w, "translation_velocity_m_s": v,
            "angular_speed_deg_s": float(np.linalg.norm(w)), "translation_speed_m_s": float(np.linalg.norm(v)),
            "rotation_during_exposure_deg": float(np.linalg.norm(w)) * T,
            "translation_during_exposure_m": float(np.linalg.norm(v)) * T,
            "centre_blur_px": shake_blur_px(cam["K"], cam["distance_m"], w, v, T),
        }
    return {"job": job, "index": index, "key": key, "p": p, "cam": cam, "info": info, "scan": scan,
            "hdri": hdri, "out": out, "coverage": coverage, "rejected": rejected, "adaptive": adaptive,
            "variation": variation, "realism": realism, "cr": cr, "blender": blender, "timings": timings}


def finish_sample(r: dict[str, Any], out_dir: str | os.PathLike, previews: bool = False,
                  config_hash: str | None = None) -> dict[str, Any]:
    """Post-process and write a sample rendered by :func:`render_passes` (no Blender call: safe on any thread).

    Applies exposure, white balance, sensor noise and the depth-sensor simulation, builds the JSON
    record and writes the sample atomically (record last), plus the preview PNG if ``previews``.
    ``config_hash`` (default: :func:`synthgen.config.content_hash` of the job) is stored in the
    record as ``render.config_hash``; a resumed run only accepts samples carrying its own hash.

    Returns:
        ``{"key", "record", "timings": {"setup_s", "render_s", "write_s"}, "resamples"}``.

    Raises:
        ContractError: the sample breaks the sample contract.
        OSError: a file cannot be written.
    """
    job, index, key, p, cam, info, scan, hdri, out, coverage, rejected, adaptive, variation, realism, cr, blender, \
        timings = (r[k] for k in ("job", "index", "key", "p", "cam", "info", "scan", "hdri", "out", "coverage",
                                  "rejected", "adaptive", "variation", "realism", "cr", "blender", "timings"))
    cfg = job.config
    rs = cfg.render
    t0 = time.perf_counter()
    exposure = apply_exposure(out["rgb"], out["mask"], rs.auto_exposure, rs.exposure_target, p["exposure_ev"])
    if "wb_gains_rgb" in cr:
        out["rgb"] *= np.asarray(cr["wb_gains_rgb"], np.float32)
        realism["white_balance"] = {"gains_rgb": cr["wb_gains_rgb"]}
    if "shot_noise_k" in cr:
        nrng = np.random.default_rng(cr["noise_seed"])
        x = np.maximum(out["rgb"], 0.0)
        std = np.sqrt(cr["shot_noise_k"] * x + cr["read_noise_std"] ** 2)
        out["rgb"] = np.maximum(x + nrng.standard_normal(x.shape).astype(np.float32) * std, 0.0).astype(np.float32)
        realism["sensor_noise"] = {"model": "poisson_gaussian_approx", "shot_noise_k": cr["shot_noise_k"],
                                   "read_noise_std": cr["read_noise_std"], "noise_seed": cr["noise_seed"]}
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
            **variation,
            **({"camera_realism": realism} if realism else {}),
            "settings": {"engine": "CYCLES", "device": rs.device, "samples": rs.samples,
                         "adaptive_threshold": adaptive, "denoise": rs.denoise,
                         "denoiser": "OPENIMAGEDENOISE" if rs.denoise else None,
                         "max_bounces": rs.max_bounces, **quality_settings(rs), "cycles_seed": p["cycles_seed"],
                         "width": rs.width, "height": rs.height},
            "versions": {"synthgen": __version__, "blender": blender},
            "config_hash": config_hash or content_hash(job),
        },
        "synthgen_version": __version__,
    }
    if cfg.relights_per_view > 1:
        record["render"]["view_id"], record["render"]["relight_id"] = p["view_id"], p["relight_id"]
        record["render"]["relights_per_view"] = cfg.relights_per_view
    if "area_lights" in p:
        record["render"]["area_lights"] = p["area_lights"]
    extra = {}
    if cfg.depth_sensor.enabled:
        from .depth_sensor import simulate, surface_from_passes
        from .sampling import _rng, view_of

        ds = cfg.depth_sensor.model_dump(exclude={"enabled"})
        view, _ = view_of(job, index)  # drawn per view: a view's relights share the sensor depth too
        # albedo and specularity from the pinhole render's colour passes (lighting-independent, so
        # the relights of a view share them too)
        albedo, specularity = surface_from_passes(out["diffuse_color"], out["glossy_color"])
        extra["depth_sensor.exr"], stats = simulate(out["depth"], cam["K"], _rng(cfg.seed, view, 1 + p["attempt"], 4000),
                                                    albedo=albedo, specularity=specularity, **ds)
        record["render"]["depth_sensor"] = {"member": "depth_sensor.exr", "model": "synthgen.depth_sensor",
                                            "surface": "cycles_diffuse_glossy_color", "params": ds, "stats": stats}
    rec = write_sample(out_dir, key, out["rgb"], out["depth"], out["mask"], record, extra=extra or None)
    if previews:
        from .preview import save_preview

        save_preview(Path(out_dir) / "_meta" / "previews" / f"{key}.png", out["rgb"], out["depth"], out["mask"])
    timings["write_s"] = time.perf_counter() - t0
    return {"key": key, "record": rec, "timings": timings, "resamples": len(rejected)}
