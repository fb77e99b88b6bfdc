"""Per-sample parameters, derived only from (global seed, sample index, attempt).

Streams (numpy ``SeedSequence(entropy=seed, spawn_key=...)``):
- ``(index, 0)``: the scan choice (fixed across re-samples, so work can be grouped by scan);
- ``(index, 1 + attempt)``: everything else, including the Cycles seed.

Any sample can therefore be re-rendered alone with identical parameters.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .camera import focal_from_fov, fov_from_focal
from .config import Job
from .distributions import Choice


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=tuple(key)))


def sample_key(job: Job, index: int) -> str:
    """WebDataset key of sample ``index``: ``{name}_s{seed}_{index:06d}`` (no dots)."""
    return f"{job.config.name}_s{job.config.seed}_{index:06d}"


def scan_for(job: Job, index: int) -> str:
    """Scan id of sample ``index`` (weighted choice)."""
    ids = [s.id for s in job.scans]
    w = [s.weight for s in job.scans]
    return Choice(dist="choice", values=ids, weights=w).sample(_rng(job.config.seed, index, 0))


def sample_params(job: Job, index: int, attempt: int = 0) -> dict[str, Any]:
    """All randomized parameters of sample ``index`` at re-sample ``attempt``.

    Returns a JSON-ready dict: scan id, HDRI id/rotation (deg)/strength, focal length (mm),
    sensor width (mm), fields of view (deg), yaw/pitch/roll (deg), distance (m) or subject
    fraction, target jitter (m, xyz), background mode, exposure offset (EV) and the Cycles seed.
    """
    cfg = job.config
    cam = cfg.camera
    rng = _rng(cfg.seed, index, 1 + attempt)
    p: dict[str, Any] = {"index": index, "attempt": attempt, "scan_id": scan_for(job, index)}
    hdri = Choice(dist="choice", values=[h.id for h in job.hdris]).sample(rng)
    p["hdri_id"] = hdri
    p["hdri_rotation_deg"] = float(cfg.hdris.rotation_deg.sample(rng)) % 360.0
    p["hdri_strength"] = float(cfg.hdris.strength.sample(rng))
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
    return p


def distance_for_fraction(f_mm: float, sensor_width_mm: float, width: int, height: int,
                          region_height_m: float, fraction: float) -> float:
    """Camera distance (m) at which a region ``region_height_m`` tall spans ``fraction`` of the
    image height: ``d = f * h / (fraction * sensor_height)`` with ``sensor_height = sensor_width * H / W``."""
    sensor_h = sensor_width_mm * height / width
    return f_mm * region_height_m / (fraction * sensor_h)


def plan(job: Job, indices: list[int] | None = None) -> dict[str, list[int]]:
    """Group sample indices by scan id: ``{scan_id: [index, ...]}`` (each list ascending)."""
    groups: dict[str, list[int]] = {s.id: [] for s in job.scans}
    for i in (range(job.config.num_samples) if indices is None else indices):
        groups[scan_for(job, i)].append(i)
    return {k: v for k, v in groups.items() if v}
