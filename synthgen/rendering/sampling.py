"""Per-sample parameters, derived only from (global seed, sample index, attempt).

Streams (numpy ``SeedSequence(entropy=seed, spawn_key=...)``), named by :class:`Stream`:
- ``(view, Stream.SUBJECT)``: the subject choice (fixed across re-samples, so work can be grouped by subject);
- ``(view, 1 + attempt)``: everything else, including the Cycles seed, and its sub-streams
  ``(view, 1 + attempt, Stream.X [+ relight])`` below.

Any sample can therefore be re-rendered alone with identical parameters.

Relights (``relights_per_view: K``): sample ``index`` is relight ``r = index % K`` of view
``v = index // K``. The subject, camera, pose, appearance and Cycles seed come from the view's
streams, so the K relights of a view share geometry; relight 0 keeps the view stream's lighting,
relight ``r > 0`` draws HDRI, rotation, strength and exposure offset from ``Stream.RELIGHT + r``.
With K = 1 every value equals the pre-relight scheme. Sub-streams: ``POSE``, ``APPEARANCE``,
``AREA_LIGHTS + r`` (extra area lights of relight ``r``), ``DEPTH_SENSOR`` (sensor noise),
``CAMERA_REALISM + r`` (f-stop, white balance, sensor noise, then motion blur of relight ``r``).
Pose animation phase and motion blur were added after the values before them in their streams, so
jobs without them draw exactly what they drew before.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict

from ..camera import focal_from_fov, fov_from_focal
from ..distributions import Choice
from .config import CameraProfiles, Job
from .jsonmodel import JsonModel


class Stream(IntEnum):
    """Names of the random streams (the numbers are part of the data contract: changing one changes
    every sample drawn from it)."""

    SUBJECT = 0          #: ``(view, SUBJECT)``: which subject a view shows
    POSE = 1000          #: sub-streams of ``(view, 1 + attempt)``
    APPEARANCE = 1001
    RELIGHT = 2000       #: ``+ relight``: lighting of relight r > 0
    AREA_LIGHTS = 3000   #: ``+ relight``
    DEPTH_SENSOR = 4000
    CAMERA_REALISM = 5000  #: ``+ relight``
    CAMERA_PROFILE = 6000


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=tuple(int(k) for k in key)))


def stream(job: Job, view: int, attempt: int, sub: Stream | None = None, offset: int = 0) -> np.random.Generator:
    """The random generator of ``view`` at re-sample ``attempt``: the view stream ``(view, 1 + attempt)``
    itself, or its sub-stream ``sub + offset`` (e.g. ``Stream.AREA_LIGHTS, relight``)."""
    key = (view, 1 + attempt) if sub is None else (view, 1 + attempt, int(sub) + offset)
    return _rng(job.config.seed, *key)


class SampleParams(JsonModel):
    """Every randomized parameter of one sample (:func:`sample_params`); its JSON form
    (:meth:`to_json`) is the record's ``render.params``.

    Units: degrees for angles (yaw/pitch/roll in the orbit convention of
    :func:`synthgen.camera.orbit_position`, fields of view horizontal/vertical), millimetres for
    focal length and sensor width, metres for distance and target jitter (world x, y, z), stops for
    ``exposure_ev``. ``distance_m`` is None when the distance follows from ``subject_fraction``
    (head height / image height) once the subject is loaded. Optional sections are present only
    when their feature is on: ``pose``, ``appearance``, ``camera_realism`` (dicts, see
    :func:`pose_params`, :func:`appearance_params`), ``area_lights`` (:func:`area_light_params`),
    ``view_id``/``relight_id`` (relights). Read-only mapping access (``p["yaw_deg"]``) is kept for
    code written against the JSON form.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    attempt: int
    scan_id: str | None
    subject_id: str | None = None
    subject_source: str | None = None
    identity: int | None = None
    camera_profile: str | None = None
    hdri_id: str
    hdri_rotation_deg: float
    hdri_strength: float
    background: Literal["visible", "transparent"]
    focal_length_mm: float
    sensor_width_mm: float
    fov_x_deg: float
    fov_y_deg: float
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    distance_m: float | None
    subject_fraction: float | None
    target_jitter_m: list[float]
    exposure_ev: float
    cycles_seed: int
    view_id: int | None = None
    relight_id: int | None = None
    pose: dict[str, Any] | None = None
    appearance: dict[str, Any] | None = None
    camera_realism: dict[str, Any] | None = None
    area_lights: list[dict[str, Any]] | None = None


def sample_key(job: Job, index: int) -> str:
    """WebDataset key of sample ``index``: ``{name}_s{seed}_{index:06d}`` (no dots)."""
    return f"{job.config.name}_s{job.config.seed}_{index:06d}"


def view_of(job: Job, index: int) -> tuple[int, int]:
    """``(view_id, relight_id)`` of sample ``index``: ``(index // K, index % K)``."""
    k = job.config.relights_per_view
    return index // k, index % k


def subject_for(job: Job, index: int) -> str:
    """Subject of sample ``index``: a scan id, or ``f"{id}_{j:05d}"`` for identity ``j`` of a
    ``subjects`` entry (weighted choice among scans and entries, then a uniform identity; drawn per
    view from ``(view, Stream.SUBJECT)``, so work can be grouped by subject)."""
    view, _ = view_of(job, index)
    rng = _rng(job.config.seed, view, Stream.SUBJECT)
    entries = [(s.id, None) for s in job.scans] + [(h.id, h) for h in job.config.subjects]
    weights = [s.weight for s in job.scans] + [h.weight for h in job.config.subjects]
    if not job.config.subjects:  # exactly the draw of jobs made before generated subjects existed
        return Choice(dist="choice", values=[e[0] for e in entries], weights=weights).sample(rng)
    k = Choice(dist="choice", values=list(range(len(entries))), weights=weights).sample(rng)
    sid, spec = entries[int(k)]
    return sid if spec is None else spec.subject_id(int(rng.integers(0, spec.identities)))


scan_for = subject_for
"""Alias of :func:`subject_for` (the name from before generated subjects)."""


def generated_subject(job: Job, subject: str) -> tuple[str, int] | None:
    """``(entry id, identity j)`` when ``subject`` is a generated one (``{id}_{j:05d}``), else None."""
    for h in job.config.subjects:
        if subject.startswith(h.id + "_") and subject[len(h.id) + 1:].isdigit():
            return h.id, int(subject[len(h.id) + 1:])
    return None


def camera_profile_for(job: Job, index: int) -> str | None:
    """Camera profile of sample ``index`` (weighted choice drawn per view from
    ``(view, Stream.CAMERA_PROFILE)``, fixed across re-samples), or None for a single camera."""
    cam = job.config.camera
    if isinstance(cam, CameraProfiles):
        view, _ = view_of(job, index)
        return Choice(dist="choice", values=[c.name for c in cam.profiles],
                      weights=[c.weight for c in cam.profiles]).sample(_rng(job.config.seed, view, Stream.CAMERA_PROFILE))
    return None


def _lighting(cfg, rng, hdri_ids) -> dict[str, Any]:
    return {"hdri_id": Choice(dist="choice", values=hdri_ids).sample(rng),
            "hdri_rotation_deg": float(cfg.hdris.rotation_deg.sample(rng)) % 360.0,
            "hdri_strength": float(cfg.hdris.strength.sample(rng))}


def pose_params(job: Job, view: int, attempt: int) -> dict[str, Any]:
    """Pose of a view: ``{"subject_yaw_deg", "joints": {name: {"yaw_deg", "pitch_deg", "roll_deg"}}}``
    (degrees, body frame; see :class:`synthgen.config.JointConfig`). Every configured joint is drawn,
    whether or not the scan has the bone, so the values do not depend on the scan. With
    ``pose.source: animation`` also ``animation_phase``, uniform in [0, 1): the position in the
    scan's animation frames, mapped to a frame by :meth:`synthgen.blender.BlenderRenderer.set_pose`
    (the frame range is only known once the scan is loaded)."""
    pc = job.config.pose
    rng = stream(job, view, attempt, Stream.POSE)
    out: dict[str, Any] = {"subject_yaw_deg": float(pc.subject_yaw_deg.sample(rng)), "joints": {}}
    for j in pc.joints:
        out["joints"][j.name] = {a: float(getattr(j, a).sample(rng)) for a in ("yaw_deg", "pitch_deg", "roll_deg")}
    if pc.source == "animation":
        out["animation_phase"] = float(rng.random())
    return out


def _unit_vector(rng: np.random.Generator) -> list[float]:
    """Direction uniform on the unit sphere (normalised 3D standard normal; Muller 1959)."""
    while True:
        v = rng.standard_normal(3)
        n = float(np.linalg.norm(v))
        if n > 1e-9:
            return (v / n).tolist()


def motion_blur_params(cr, rng: np.random.Generator) -> dict[str, Any]:
    """Hand shake of one exposure (see :class:`synthgen.config.CameraRealismConfig`): ``shutter_s``
    (seconds), ``angular_velocity_deg_s`` and ``translation_velocity_m_s`` (3-vectors in the
    camera's OpenCV axes: x right, y down, z forward; deg/s and m/s), with speeds drawn from the
    config and directions uniform on the sphere."""
    shutter = float(cr.shutter_s.sample(rng))
    w_speed = float(cr.shake_angular_speed_deg_s.sample(rng))
    w_dir = _unit_vector(rng)
    v_speed = float(cr.shake_translation_speed_m_s.sample(rng))
    v_dir = _unit_vector(rng)
    return {"shutter_s": shutter,
            "angular_velocity_deg_s": [w_speed * c for c in w_dir],
            "translation_velocity_m_s": [v_speed * c for c in v_dir]}


def appearance_params(job: Job, view: int, attempt: int) -> dict[str, Any]:
    """Appearance of a view: HSV factors (Blender HSV node convention), roughness and the skin tone
    (linear RGB) used for materials without textures."""
    ac = job.config.appearance
    rng = stream(job, view, attempt, Stream.APPEARANCE)
    out = {k: float(getattr(ac, k).sample(rng)) for k in ("hue", "saturation", "value", "roughness")}
    out["skin_tone_index"] = int(rng.integers(0, len(ac.skin_tones)))
    out["skin_tone_rgb"] = list(ac.skin_tones[out["skin_tone_index"]])
    return out


def area_light_params(job: Job, view: int, attempt: int, relight: int) -> list[dict[str, Any]]:
    """Extra area lights of one relight: azimuth (deg, about +Z from -Y, i.e. in front of the
    subject at 0), elevation (deg), distance (m) from the camera target, power (W), size (m) and
    colour temperature (K)."""
    al = job.config.area_lights
    rng = stream(job, view, attempt, Stream.AREA_LIGHTS, relight)
    n = max(0, int(round(float(al.count.sample(rng)))))
    return [{"azimuth_deg": float(rng.uniform(-180, 180)), "elevation_deg": float(al.elevation_deg.sample(rng)),
             "distance_m": float(al.distance_m.sample(rng)), "power_w": float(al.power_w.sample(rng)),
             "size_m": float(al.size_m.sample(rng)), "temperature_k": float(al.temperature_k.sample(rng))}
            for _ in range(n)]


def sample_params(job: Job, index: int, attempt: int = 0) -> SampleParams:
    """All randomized parameters of sample ``index`` at re-sample ``attempt`` (pure: they depend only
    on the job's seed, ``index`` and ``attempt``).

    Returns:
        :class:`SampleParams`: scan id, HDRI id/rotation (deg)/strength, focal length (mm), sensor
        width (mm), fields of view (deg), yaw/pitch/roll (deg), distance (m) or subject fraction,
        target jitter (m, xyz), background mode, exposure offset (EV), the Cycles seed, and the
        sections of the variation features that are on.
    """
    cfg = job.config
    view, relight = view_of(job, index)
    profile = camera_profile_for(job, index)
    cam = job.camera_config(profile)
    rng = stream(job, view, attempt)
    subject = subject_for(job, index)
    gen = generated_subject(job, subject)
    p: dict[str, Any] = {"index": index, "attempt": attempt, "scan_id": subject if gen is None else None}
    if gen is not None:
        p.update(subject_id=subject, subject_source=gen[0], identity=gen[1])
    if profile is not None:
        p["camera_profile"] = profile
    p.update(_lighting(cfg, rng, [h.id for h in job.hdris]))
    p["background"] = cfg.hdris.background
    W, H = cfg.render.width, cfg.render.height
    if cam.focal_length_mm is not None:
        f = float(cam.focal_length_mm.sample(rng))
    else:
        f = focal_from_fov(float(cam.fov_deg.sample(rng)), cam.sensor_width_mm)
    p["focal_length_mm"] = f
    p["sensor_width_mm"] = cam.sensor_width_mm
    p["fov_x_deg"] = fov_from_focal(f, cam.sensor_width_mm)
    p["fov_y_deg"] = fov_from_focal(f, cam.sensor_width_mm * H / W)
    p["yaw_deg"] = float(cam.yaw_deg.sample(rng))
    p["pitch_deg"] = float(cam.pitch_deg.sample(rng))
    p["roll_deg"] = float(cam.roll_deg.sample(rng))
    if cam.distance_m is not None:
        p["distance_m"] = float(cam.distance_m.sample(rng))
        p["subject_fraction"] = None
    else:
        p["distance_m"] = None  # resolved by the renderer from the scan's target-region height
        p["subject_fraction"] = float(cam.subject_fraction.sample(rng))
    p["target_jitter_m"] = [float(cam.target_jitter_m.sample(rng)) for _ in range(3)]
    p["exposure_ev"] = float(cfg.render.exposure_ev.sample(rng)) if cfg.render.auto_exposure else 0.0
    p["cycles_seed"] = int(rng.integers(0, 2**31 - 1))
    if cfg.relights_per_view > 1:
        p["view_id"], p["relight_id"] = view, relight
        if relight > 0:
            lrng = stream(job, view, attempt, Stream.RELIGHT, relight)
            p.update(_lighting(cfg, lrng, [h.id for h in job.hdris]))
            p["exposure_ev"] = float(cfg.render.exposure_ev.sample(lrng)) if cfg.render.auto_exposure else 0.0
    if cfg.pose.enabled:
        p["pose"] = pose_params(job, view, attempt)
    if cfg.appearance.enabled:
        p["appearance"] = appearance_params(job, view, attempt)
    cr = cfg.camera_realism
    if cr.any:
        crng = stream(job, view, attempt, Stream.CAMERA_REALISM, relight)
        c: dict[str, Any] = {}
        if cr.dof:
            c["f_stop"] = float(cr.f_stop.sample(crng))
        if cr.white_balance:
            c["wb_gains_rgb"] = [float(cr.wb_red_gain.sample(crng)), 1.0, float(cr.wb_blue_gain.sample(crng))]
        if cr.sensor_noise:
            c["shot_noise_k"] = float(cr.shot_noise_k.sample(crng))
            c["read_noise_std"] = float(cr.read_noise_std.sample(crng))
            c["noise_seed"] = int(crng.integers(0, 2**31 - 1))
        if cr.motion_blur:
            c["motion_blur"] = motion_blur_params(cr, crng)
        p["camera_realism"] = c
    if cfg.area_lights.count.bounds()[1] not in (0, None):
        p["area_lights"] = area_light_params(job, view, attempt, relight)
    return SampleParams(**p)


def distance_for_fraction(f_mm: float, sensor_width_mm: float, width: int, height: int,
                          region_height_m: float, fraction: float) -> float:
    """Camera distance (m) at which a region ``region_height_m`` tall spans ``fraction`` of the
    image height: ``d = f * h / (fraction * sensor_height)`` with ``sensor_height = sensor_width * H / W``."""
    sensor_h = sensor_width_mm * height / width
    return f_mm * region_height_m / (fraction * sensor_h)


def plan(job: Job, indices: list[int] | None = None) -> dict[str, list[int]]:
    """Group sample indices by subject: ``{subject: [index, ...]}`` (each list ascending; scans
    first in config order, then generated subjects in order of first appearance)."""
    groups: dict[str, list[int]] = {s.id: [] for s in job.scans}
    for i in (range(job.config.num_samples) if indices is None else indices):
        groups.setdefault(subject_for(job, i), []).append(i)
    return {k: v for k, v in groups.items() if v}
