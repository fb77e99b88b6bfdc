"""The JSON record of a rendered sample (see docs/sample_format.md for every field): camera
(K in pixels and camera-to-world in OpenCV axes), depth and mask conventions, and the ``render``
section holding everything that was sampled and how it was rendered.
"""

from __future__ import annotations

from typing import Any

from .. import __version__

QUALITY_KEYS = ("diffuse_bounces", "glossy_bounces", "transmission_bounces", "transparent_bounces",
                "env_map_resolution", "light_tree", "denoiser_prepass", "denoiser_prefilter", "denoiser_quality",
                "clamp_indirect", "persistent_data")


def quality_settings(rs) -> dict[str, Any]:
    """The Cycles quality settings of :class:`synthgen.rendering.config.RenderSettings` beyond samples,
    adaptive threshold, denoise and max bounces (keyword arguments of ``BlenderRenderer.configure``)."""
    return {k: getattr(rs, k) for k in QUALITY_KEYS}


def scan_record(scan, info: dict[str, Any], cfg_dir) -> dict[str, Any]:
    """The record's ``render.scan``: id, file (relative to the config folder), scale (file units ->
    metres), size rule, bounding box (m) of the measured part, warnings, orientation and what was
    measured, and the manifest's tags, licence and attribution when given."""
    import os

    out = {"id": scan.id, "file": os.path.relpath(scan.path, cfg_dir), "scale_applied": info["scale_applied"],
           "size": scan.size.model_dump(exclude_none=True), "bbox_min_m": info["bbox_min_m"],
           "bbox_max_m": info["bbox_max_m"], "warnings": info["warnings"],
           **{k: info[k] for k in ("orientation", "measured") if k in info}}
    for k in ("tags", "licence", "attribution"):
        if getattr(scan, k, None):
            out[k] = getattr(scan, k)
    return out


def camera_record(p, cam: dict[str, Any]) -> dict[str, Any]:
    """The record's ``camera``: pinhole, OpenCV axes, integer pixel centres, K (3×3, pixels),
    camera-to-world (4×4, metres), focal length and sensor width (mm), horizontal sensor fit, FoV (deg)."""
    return {"model": "pinhole", "convention": "opencv", "pixel_centre": "integer",
            "K": cam["K"].tolist(), "camera_to_world": cam["camera_to_world"].tolist(),
            "focal_length_mm": p["focal_length_mm"], "sensor_width_mm": p["sensor_width_mm"],
            "sensor_fit": "horizontal", "fov_x_deg": p["fov_x_deg"], "fov_y_deg": p["fov_y_deg"]}


def settings_record(rs, adaptive: float, cycles_seed: int) -> dict[str, Any]:
    """The record's ``render.settings``: engine, device, samples, denoiser and light-path settings."""
    return {"engine": "CYCLES", "device": rs.device, "samples": rs.samples, "adaptive_threshold": adaptive,
            "denoise": rs.denoise, "denoiser": "OPENIMAGEDENOISE" if rs.denoise else None,
            "max_bounces": rs.max_bounces, **quality_settings(rs), "cycles_seed": cycles_seed,
            "width": rs.width, "height": rs.height}


def build_record(r, exposure: dict[str, Any], realism: dict[str, Any], config_hash: str) -> dict[str, Any]:
    """The JSON record of a sample rendered by :func:`synthgen.rendering.worker.render_passes` (``r``),
    after post-processing (``exposure``, ``realism`` sections). ``files`` is added by
    :func:`synthgen.contract.write_sample`."""
    job, p, cam = r.job, r.params, r.camera
    cfg = job.config
    target = job.camera_config(p.get("camera_profile")).target
    render: dict[str, Any] = {
        "job": cfg.name, "seed": cfg.seed, "index": r.index, "attempt": p["attempt"],
        "resamples": len(r.rejected), "rejected": r.rejected, "params": p.to_json(),
        "camera": {"target_m": cam["target_m"].tolist(), "distance_m": cam["distance_m"],
                   "target_mode": target if isinstance(target, str) else "point",
                   **({"profile": p["camera_profile"]} if "camera_profile" in p else {})},
        **r.subject_record,
        "hdri": {**r.hdri_record, "effective_strength": p["hdri_strength"] * exposure["factor"]},
        "exposure": exposure,
        **r.variation,
        **({"camera_realism": realism} if realism else {}),
        "settings": settings_record(cfg.render, r.adaptive, p["cycles_seed"]),
        "versions": {"synthgen": __version__, "blender": r.blender_version},
        "config_hash": config_hash,
    }
    if cfg.relights_per_view > 1:
        render["view_id"], render["relight_id"] = p["view_id"], p["relight_id"]
        render["relights_per_view"] = cfg.relights_per_view
    if "area_lights" in p:
        render["area_lights"] = p["area_lights"]
    if getattr(r, "relight", None):  # one-pass relights: the view's single render
        render["relight"] = r.relight
        render["settings"]["samples"] = r.relight["samples"]
    return {
        "source": "synthetic",
        "subject_id": r.subject_id,
        "camera": camera_record(p, cam),
        "depth": {"kind": "planar_z", "units": "metres", "metric": True, "invalid_value": 0.0,
                  "anti_aliased": False},
        "mask": {"kind": "subject_coverage", "source": "render_alpha", "anti_aliased": True,
                 "coverage": r.coverage},
        "render": render,
        "synthgen_version": __version__,
    }
