"""Rendering one sample: parameters -> Blender -> framing check -> files. Used by Ray actors and tests.

Workers write their samples straight into the output store (which must therefore be a path every
worker can reach: a local folder on one machine, a shared filesystem on a cluster) and return only
the small record to the driver. Each file is written atomically and the JSON record last.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..contract import write_sample
from ..errors import FramingError
from .config import Job, content_hash
from .postfx import MAX_EXPOSURE_FACTOR, apply_exposure, apply_sensor_effects, lens_sections  # noqa: F401
from .subject import SubjectInfo
from .record import QUALITY_KEYS, build_record, quality_settings, scan_record  # noqa: F401 (re-exported)
from .framing import camera_for  # noqa: F401 (re-exported)
from .sampling import SampleParams, Stream, camera_profile_for, sample_key, sample_params, stream, view_of

log = logging.getLogger("synthgen.worker")


@dataclass
class Rendered:
    """A sample after its Blender passes (:func:`render_passes`), before post-processing and writing.

    Attributes:
        job, index, key: the job, the sample index and its key.
        params: the accepted attempt's :class:`SampleParams`.
        camera: :func:`camera_for` (target, distance, K, camera-to-world).
        out: the passes (``rgb`` (H, W, 3) float32 linear, ``depth`` (H, W) float32 metres,
            ``mask`` (H, W) float32, optional ``diffuse_color``/``glossy_color``), from
            ``BlenderRenderer.render``; ``rgb`` is replaced by the lens pass when there is one.
        subject_id: the split unit (scan id).
        subject_record: the record's subject section (``{"scan": {...}}``).
        hdri_record: the record's ``render.hdri`` without ``effective_strength``.
        coverage: mean mask; rejected: the re-sampled attempts' coverages.
        adaptive: the adaptive threshold used; variation: pose/appearance record sections.
        lens: dof/motion-blur record sections; blender_version; timings (seconds).
    """

    job: Job
    index: int
    key: str
    params: SampleParams
    camera: dict[str, Any]
    out: dict[str, Any]
    subject_id: str
    subject_record: dict[str, Any]
    hdri_record: dict[str, Any]
    coverage: float
    rejected: list[dict[str, Any]]
    adaptive: float
    variation: dict[str, Any]
    lens: dict[str, Any]
    blender_version: str
    timings: dict[str, float] = field(default_factory=dict)
    relight: dict[str, Any] | None = None
    """The record's ``render.relight`` for a one-pass relight (mode, samples, light groups)."""


def render_sample(renderer, job: Job, index: int, out_dir: str | os.PathLike,
                  previews: bool = False, config_hash: str | None = None) -> dict[str, Any]:
    """Render sample ``index`` of ``job`` into ``out_dir``: :func:`render_passes` then :func:`finish_sample`.

    Returns and raises as those two do; must run on the process's main thread (Blender operators).
    """
    return finish_sample(render_passes(renderer, job, index), out_dir, previews=previews, config_hash=config_hash)


def _load_subject(renderer, job: Job, p: SampleParams) -> tuple[SubjectInfo, str, dict[str, Any]]:
    """Load the sample's subject into Blender; returns (subject info for framing, subject id, record section)."""
    cfg = job.config
    if p.identity is not None:
        spec = job.human_spec(p.subject_source)
        info = renderer.load_human(spec, cfg.seed, p.identity, appearance=cfg.appearance.enabled)
        rec = {"subject": {"kind": "makehuman", "source": spec.id, **info["identity"],
                           "build_s": round(info["build_s"], 3), "blender_build_s": round(info["blender_s"], 3),
                           "height_m": info["height_m"], "bbox_min_m": info["bbox_min_m"],
                           "bbox_max_m": info["bbox_max_m"], "warnings": info["warnings"]}}
        return info, p.subject_id, rec
    scan = next(s for s in job.scans if s.id == p["scan_id"])
    info = renderer.load_scan(scan, rest_pose=cfg.pose.enabled, appearance=cfg.appearance.enabled,
                              keep_animation=cfg.pose.enabled and cfg.pose.source == "animation")
    return info, scan.id, {"scan": scan_record(scan, info, Path(job.config_path).parent)}


def _set_variation(renderer, job: Job, p: SampleParams, info: SubjectInfo) -> tuple[SubjectInfo, dict[str, Any]]:
    """Pose and appearance of the loaded subject; returns (info with posed targets, record sections)."""
    cfg = job.config
    variation: dict[str, Any] = {}
    if cfg.pose.enabled:
        variation["pose"] = renderer.set_pose(cfg.pose.joints, p["pose"])
        info = info.model_copy(update=dict(target_head_m=renderer.posed_point(info.target_head_m),
                                           target_center_m=renderer.posed_point(info.target_center_m)))
    if cfg.appearance.enabled:
        a = p["appearance"]
        variation["appearance"] = renderer.set_appearance(
            a["hue"], a["saturation"], a["value"], a["roughness"], a["skin_tone_rgb"],
            cfg.appearance.subsurface_weight)
    return info, variation


def _setup_view(renderer, job: Job, p: SampleParams, info: dict[str, Any]) -> tuple[dict[str, Any], dict, float]:
    """HDRI, area lights, camera and Cycles settings of one attempt; returns (camera, HDRI record, adaptive threshold)."""
    cfg = job.config
    rs = cfg.render
    hdri = next(h for h in job.hdris if h.id == p["hdri_id"])
    renderer.set_hdri(hdri.path, p["hdri_rotation_deg"], p["hdri_strength"])
    cam = camera_for(job, p, info)
    if "area_lights" in p:
        renderer.set_area_lights(p["area_lights"], cam["target_m"].tolist())
    renderer.set_camera(cam["camera_to_world"], p["focal_length_mm"], p["sensor_width_mm"])
    # relights of a view must share the mask: adaptive sampling would make it light-dependent
    adaptive = rs.adaptive_threshold if cfg.relights_per_view == 1 else 0.0
    renderer.configure(rs.width, rs.height, rs.samples, adaptive, rs.denoise, rs.max_bounces,
                       **quality_settings(rs))
    return cam, _hdri_record(job, p), adaptive


def _hdri_record(job: Job, p: SampleParams) -> dict[str, Any]:
    """The record's ``render.hdri`` without ``effective_strength``."""
    hdri = next(h for h in job.hdris if h.id == p["hdri_id"])
    return {"id": hdri.id, "file": os.path.relpath(hdri.path, Path(job.config_path).parent),
            "rotation_deg": p["hdri_rotation_deg"], "strength": p["hdri_strength"], "background": p["background"]}


def render_passes(renderer, job: Job, index: int) -> Rendered:
    """The Blender part of sample ``index``: load the subject, set up the scene and render, re-sampling
    the parameters until the framing fits.

    Must run on the process's main thread: Blender's importers and mode switches fail their
    ``poll()`` anywhere else. Everything after it (:func:`finish_sample`) is plain numpy and file
    I/O and may run on another thread, so a worker overlaps writing one sample with rendering the next.
    With ``render.relight_mode: one_pass`` a view's relights come from one Cycles pass (:func:`_relit`).

    Raises:
        FramingError: coverage stayed outside [coverage_min, coverage_max] for every attempt.
        ScanImportError: the scan cannot be imported.
    """
    if one_pass(job):
        return _relit(renderer, job, index)
    return _render_alone(renderer, job, index)


def _framed(framing, coverage: float, rejected: list[dict[str, Any]], attempt: int) -> bool:
    """Whether the subject's image coverage (mask mean, 0-1) is inside ``framing``'s bounds; if not,
    the attempt is added to ``rejected``."""
    if framing.coverage_min <= coverage <= framing.coverage_max:
        return True
    rejected.append({"attempt": attempt, "coverage": coverage})
    return False


def _framing_error(what: str, framing, rejected: list[dict[str, Any]], coverage: float) -> FramingError:
    return FramingError(f"{what}: subject coverage stayed outside [{framing.coverage_min}, {framing.coverage_max}] "
                        f"in {len(rejected)} attempts (last {coverage:.4f}); "
                        "check camera.distance_m / subject_fraction and framing.*")


def _render_alone(renderer, job: Job, index: int) -> Rendered:
    """:func:`render_passes` of one sample in its own Cycles render (``relight_mode: separate``)."""
    from .blender import blender_version

    cfg = job.config
    key = sample_key(job, index)
    timings = {"setup_s": 0.0, "render_s": 0.0, "write_s": 0.0}
    rejected: list[dict[str, Any]] = []
    framing = job.framing_for(camera_profile_for(job, index))
    for attempt in range(framing.max_resamples + 1):
        t0 = time.perf_counter()
        p = sample_params(job, index, attempt)
        info, subject_id, subject_rec = _load_subject(renderer, job, p)
        info, variation = _set_variation(renderer, job, p, info)
        cam, hdri_rec, adaptive = _setup_view(renderer, job, p, info)
        timings["setup_s"] += time.perf_counter() - t0
        out = renderer.render(p["cycles_seed"], background_visible=(p["background"] == "visible"),
                              surface_passes=cfg.depth_sensor.enabled)
        timings["render_s"] += out["seconds"]
        coverage = float(out["mask"].mean())
        if _framed(framing, coverage, rejected, attempt):
            break
    else:
        raise _framing_error(f"sample {key}", framing, rejected, coverage)
    r = Rendered(job=job, index=index, key=key, params=p, camera=cam, out=out, subject_id=subject_id,
                 subject_record=subject_rec, hdri_record=hdri_rec, coverage=coverage, rejected=rejected,
                 adaptive=adaptive, variation=variation, lens={}, blender_version=blender_version(),
                 timings=timings)
    _lens_pass(renderer, r)
    return r


def one_pass(job: Job) -> bool:
    """Whether ``job`` renders relights in one pass per view (``render.relight_mode: one_pass``, more
    than one relight per view, no lens pass: depth of field and motion blur are drawn per relight)."""
    cfg = job.config
    cr = cfg.camera_realism
    return cfg.render.relight_mode == "one_pass" and cfg.relights_per_view > 1 and not (cr.dof or cr.motion_blur)


def _lighting(p: SampleParams) -> tuple:
    """What a relight's light groups depend on: HDRI, rotation and area lights (not the strength)."""
    return p["hdri_id"], p["hdri_rotation_deg"], json.dumps(p.get("area_lights"))


def _relit(renderer, job: Job, index: int) -> Rendered:
    """Relight ``index`` from its view's one pass (see :func:`_render_view`), or rendered alone when
    the view's relights differ in more than strength and ``render.relight_domes`` is off.

    The renderer's cache keeps the view's other relights (or its framing failure) until a sample of
    another view is asked for, so memory stays bounded; a view split between workers is rendered
    by each of them (correct, just slower)."""
    view = view_of(job, index)[0]
    K = job.config.relights_per_view
    if not job.config.render.relight_domes and len({_lighting(sample_params(job, view * K + r)) for r in range(K)}) > 1:
        return _render_alone(renderer, job, index)
    key = (content_hash(job), view)
    cache = renderer.relight_cache
    if cache is not None and cache[0] == key:
        if isinstance(cache[1], FramingError):
            raise cache[1]
        if index in cache[1]:
            return cache[1].pop(index)  # timings 0: the view's cost went to the sample that rendered it
    renderer.relight_cache = None
    try:
        rendered, timings = _render_view(renderer, job, view)
    except FramingError as exc:
        renderer.relight_cache = (key, exc)
        raise
    r = rendered.pop(index)
    r.timings = timings
    renderer.relight_cache = (key, rendered)
    return r


def _render_view(renderer, job: Job, view: int) -> tuple[dict[int, Rendered], dict[str, float]]:
    """Every relight of ``view`` from one Cycles pass (docs/relight.md), re-sampling the view until
    the framing fits like :func:`render_passes`. Returns the relights by index and the view's timings."""
    from .blender import blender_version

    cfg, rs, K = job.config, job.config.render, job.config.relights_per_view
    indices = [view * K + r for r in range(K)]
    framing = job.framing_for(camera_profile_for(job, indices[0]))
    rejected: list[dict[str, Any]] = []
    timings = {"setup_s": 0.0, "render_s": 0.0, "write_s": 0.0}
    denoise = {"prepass": rs.denoiser_prepass, "prefilter": rs.denoiser_prefilter,
               "quality": rs.denoiser_quality} if rs.denoise else None
    ps: list[SampleParams] = []
    hdris = {h.id: h.path for h in job.hdris}
    try:
        for attempt in range(framing.max_resamples + 1):
            t0 = time.perf_counter()
            ps = [sample_params(job, i, attempt) for i in indices]
            info, subject_id, subject_rec = _load_subject(renderer, job, ps[0])
            info, variation = _set_variation(renderer, job, ps[0], info)
            renderer.clear_relights()
            if "area_lights" in ps[0]:
                renderer.set_area_lights([], [0.0, 0.0, 0.0])
            lightings = [{"path": hdris[p["hdri_id"]], "rotation_deg": p["hdri_rotation_deg"],
                          "strength": p["hdri_strength"], "area_lights": p.get("area_lights")} for p in ps]
            plan = renderer.relight_plan(lightings)
            spp = rs.relight_samples or rs.samples * len({_lighting(p) for p in ps})
            cam = camera_for(job, ps[0], info)
            renderer.set_camera(cam["camera_to_world"], ps[0]["focal_length_mm"], ps[0]["sensor_width_mm"])
            renderer.configure(rs.width, rs.height, rs.samples, 0.0, rs.denoise, rs.max_bounces, **quality_settings(rs))
            timings["setup_s"] += time.perf_counter() - t0
            geo = None
            if spp != rs.samples:  # depth and mask of the separate render's samples (byte-identical)
                geo = renderer.render_geometry(ps[0]["cycles_seed"], cfg.depth_sensor.enabled)
                timings["render_s"] += geo["seconds"]
            t0 = time.perf_counter()
            groups = renderer.set_relight_lights(lightings, plan, cam["target_m"].tolist())
            renderer.configure(rs.width, rs.height, spp, 0.0, rs.denoise, rs.max_bounces, **quality_settings(rs))
            timings["setup_s"] += time.perf_counter() - t0
            out = renderer.render_light_groups(ps[0]["cycles_seed"], groups, "hdri0",
                                               cfg.depth_sensor.enabled and geo is None, denoise,
                                               rs.clamp_indirect * spp / rs.samples)
            timings["render_s"] += out["seconds"] + out["denoise_seconds"]
            coverage = float((geo or out)["mask"].mean())
            if _framed(framing, coverage, rejected, attempt):
                break
        else:
            raise _framing_error(f"view {view} (sample {sample_key(job, indices[0])})", framing, rejected, coverage)
        t0 = time.perf_counter()
        bg: dict[str, np.ndarray] = {}
        shared = {k: v for k, v in (geo or out).items() if k in ("depth", "mask", "diffuse_color", "glossy_color")}
        relight = {"mode": "one_pass", "samples": spp, "light_groups": len(groups),
                   "geometry_pass": geo is not None}
        rendered = {}
        for r, p in enumerate(ps):
            g = plan[r]
            rgb = renderer.relight_rgb(lightings[r], g, out, cam["K"], cam["camera_to_world"],
                                       p["background"] == "visible", bg)
            rendered[indices[r]] = x = Rendered(
                job=job, index=indices[r], key=sample_key(job, indices[r]), params=p, camera=cam,
                out={"rgb": rgb, "seconds": out["seconds"], **shared}, subject_id=subject_id,
                subject_record=subject_rec, hdri_record=_hdri_record(job, p), coverage=coverage, rejected=list(rejected),
                adaptive=0.0, variation=variation, lens={}, blender_version=blender_version(),
                relight={**relight, "hdri_group": g["hdri"], "area_group": g["area"],
                         "light_dome": g["hdri"] != "hdri0"},
                timings={"setup_s": 0.0, "render_s": 0.0, "write_s": 0.0})
            _lens_pass(renderer, x)
        timings["render_s"] += time.perf_counter() - t0
    finally:
        renderer.clear_relights()
        if ps and "area_lights" in ps[0]:
            renderer.set_area_lights([], [0.0, 0.0, 0.0])  # no light stays behind at a group's scale
    return rendered, timings


def _lens_pass(renderer, r: Rendered) -> None:
    """One extra Cycles pass for the RGB only, with depth of field and/or motion blur (depth and mask
    stay the clean pinhole ground truth of the first pass); replaces ``r.out["rgb"]``."""
    p, cam = r.params, r.camera
    cr = p.get("camera_realism") or {}
    mb = cr.get("motion_blur")
    if "f_stop" in cr or mb:
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
        r.timings["render_s"] += lens_out["seconds"]
        r.out["rgb"] = lens_out["rgb"]
    r.lens = lens_sections(cr, p["focal_length_mm"], cam["K"], cam["distance_m"])


def _depth_sensor(r: Rendered) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """The simulated sensor depth member and its record section, when ``depth_sensor.enabled``."""
    from .depth_sensor import simulate, surface_from_passes

    job, p = r.job, r.params
    cfg = job.config
    if not cfg.depth_sensor.enabled:
        return {}, None
    ds = cfg.depth_sensor.model_dump(exclude={"enabled"})
    view, _ = view_of(job, r.index)  # drawn per view: a view's relights share the sensor depth too
    # albedo and specularity from the pinhole render's colour passes (lighting-independent, so
    # the relights of a view share them too)
    albedo, specularity = surface_from_passes(r.out["diffuse_color"], r.out["glossy_color"])
    z, stats = simulate(r.out["depth"], r.camera["K"], stream(job, view, p["attempt"], Stream.DEPTH_SENSOR),
                        albedo=albedo, specularity=specularity, **ds)
    return {"depth_sensor.exr": z}, {"member": "depth_sensor.exr", "model": "synthgen.depth_sensor",
                                     "surface": "cycles_diffuse_glossy_color", "params": ds, "stats": stats}


def finish_sample(r: Rendered, out_dir: str | os.PathLike, previews: bool = False,
                  config_hash: str | None = None) -> dict[str, Any]:
    """Post-process and write a sample rendered by :func:`render_passes` (no Blender call: safe on any thread).

    Applies exposure, white balance, sensor noise and the depth-sensor simulation, builds the JSON
    record and writes the sample atomically (record last), plus the preview PNG if ``previews``.
    ``config_hash`` (default: :func:`synthgen.rendering.config.content_hash` of the job) is stored in
    the record as ``render.config_hash``; a resumed run only accepts samples carrying its own hash.

    Returns:
        ``{"key", "record", "timings": {"setup_s", "render_s", "write_s"}, "resamples"}``.

    Raises:
        ContractError: the sample breaks the sample contract.
        OSError: a file cannot be written.
    """
    rs = r.job.config.render
    out = r.out
    t0 = time.perf_counter()
    exposure = apply_exposure(out["rgb"], out["mask"], rs.auto_exposure, rs.exposure_target, r.params["exposure_ev"],
                              rs.exposure_warn_factor)
    out["rgb"], sensor = apply_sensor_effects(out["rgb"], r.params.get("camera_realism") or {})
    realism = {**r.lens, **sensor}
    record = build_record(r, exposure, realism, config_hash or content_hash(r.job))
    extra, sensor_rec = _depth_sensor(r)
    if sensor_rec is not None:
        record["render"]["depth_sensor"] = sensor_rec
    rec = write_sample(out_dir, r.key, out["rgb"], out["depth"], out["mask"], record, extra=extra or None)
    if previews:
        from .preview import save_preview

        save_preview(Path(out_dir) / "_meta" / "previews" / f"{r.key}.png", out["rgb"], out["depth"], out["mask"])
    r.timings["write_s"] = time.perf_counter() - t0
    return {"key": r.key, "record": rec, "timings": r.timings, "resamples": len(r.rejected)}
