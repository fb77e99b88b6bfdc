"""Camera maths and per-sample parameter sampling (no Blender)."""

from __future__ import annotations

import math

import numpy as np

from synthgen.camera import focal_from_fov, fov_from_focal, intrinsics, look_at, orbit_position, project
from synthgen.rendering.config import resolve_job
from synthgen.rendering.sampling import plan, sample_key, sample_params

from conftest import SMOKE


def test_intrinsics_formula_and_pixel_centre():
    K = intrinsics(50.0, 36.0, 640, 480)
    assert math.isclose(K[0, 0], 50 * 640 / 36) and K[0, 0] == K[1, 1]
    assert K[0, 2] == 319.5 and K[1, 2] == 239.5
    assert math.isclose(fov_from_focal(focal_from_fov(63.0, 36.0), 36.0), 63.0)


def test_look_at_is_opencv_and_projects_target_to_centre():
    target = np.array([0.1, 0.2, 1.5])
    pos = orbit_position(target, yaw_deg=30, pitch_deg=10, distance_m=0.8)
    c2w = look_at(pos, target)
    R = c2w[:3, :3]
    assert np.allclose(R.T @ R, np.eye(3)) and math.isclose(np.linalg.det(R), 1.0)
    assert c2w[2, 1] < 0  # image y (down) points to world -Z (down) for an upright camera
    assert math.isclose(np.linalg.norm(pos - target), 0.8)
    K = intrinsics(35, 36, 65, 65)
    uv, z = project(target[None], K, c2w)
    assert np.allclose(uv[0], [32, 32]) and math.isclose(z[0], 0.8)


def test_front_view_faces_minus_y():
    pos = orbit_position(np.zeros(3), 0, 0, 2.0)
    assert np.allclose(pos, [0, -2, 0])


def test_sample_params_depend_only_on_seed_and_index():
    job = resolve_job(SMOKE)
    a = sample_params(job, 3)
    b = sample_params(job, 3)
    assert a == b
    assert sample_params(job, 3, attempt=1) != a
    assert sample_params(job, 3, attempt=1)["scan_id"] == a["scan_id"]
    assert sample_key(job, 3) == "smoke_s7_000003" and "." not in sample_key(job, 3)
    groups = plan(job)
    assert sorted(i for v in groups.values() for i in v) == list(range(job.config.num_samples))


def test_half_float_rgb_saturates_instead_of_overflowing(tmp_path):
    from synthgen.contract import read_sample, write_sample

    rgb = np.full((4, 4, 3), 0.5, np.float32)
    rgb[0, 0] = 1e6  # a firefly beyond the half-float range
    rgb[1, 1] = np.nan
    rec = {"source": "synthetic", "subject_id": "s", "synthgen_version": "test",
           "camera": {"K": [[4, 0, 1.5], [0, 4, 1.5], [0, 0, 1]]}, "depth": {}}
    write_sample(tmp_path, "k", rgb, np.ones((4, 4)), np.ones((4, 4)), rec)
    s = read_sample(tmp_path, "k")
    assert np.isfinite(s.rgb).all() and s.rgb[0, 0, 0] == 65504 and s.rgb[1, 1, 0] == 0


def test_auto_exposure_factor_is_clamped():
    from synthgen.rendering.worker import apply_exposure

    rgb = np.full((8, 8, 3), 1e-6, np.float32)
    e = apply_exposure(rgb, np.ones((8, 8)), True, 0.2, 0.0)
    assert e["factor"] == 256.0 and e["clamped"] and np.allclose(rgb, 256e-6)
