"""Camera profiles: a weighted mixture of cameras (selfie, rear portrait, studio), drawn per view."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import pytest

from synthgen.rendering.config import ConfigError, resolve_job
from synthgen.rendering.sampling import camera_profile_for, sample_params

from conftest import ROOT

PROFILES = textwrap.dedent("""\
    camera:
      profiles:
        - {name: selfie, weight: 3, fov_deg: {dist: uniform, low: 70, high: 85},
           distance_m: {dist: uniform, low: 0.25, high: 0.6}, pitch_deg: {dist: uniform, low: -30, high: 5},
           framing: {coverage_min: 0.1, coverage_max: 1.0}}
        - {name: rear, weight: 1, focal_length_mm: {dist: uniform, low: 50, high: 77},
           distance_m: {dist: uniform, low: 0.8, high: 2.5}}
    """)


def _job(tmp_path: Path, camera: str = PROFILES, n: int = 400):
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"name: p\nnum_samples: {n}\n"
                   f"scans: [{{id: lee, path: {ROOT}/scenes/lee_perry_smith_head/LeePerrySmith.glb, size: {{height_m: 0.36}}}}]\n"
                   f"hdris: {{paths: [\"{ROOT}/hdris/*.hdr\"]}}\n" + camera)
    return resolve_job(cfg)


def test_profiles_are_drawn_by_weight_and_use_their_own_distributions(tmp_path):
    job = _job(tmp_path)
    ps = [sample_params(job, i) for i in range(400)]
    counts = Counter(p.camera_profile for p in ps)
    assert 0.68 < counts["selfie"] / 400 < 0.82, counts          # weight 3:1
    for p in ps:
        if p.camera_profile == "selfie":
            assert 70 <= p.fov_x_deg <= 85 and 0.25 <= p.distance_m <= 0.6 and -30 <= p.pitch_deg <= 5
        else:
            assert 50 <= p.focal_length_mm <= 77 and 0.8 <= p.distance_m <= 2.5
    assert job.framing_for("selfie").coverage_max == 1.0
    assert job.framing_for("rear").coverage_max == job.config.framing.coverage_max


def test_profile_is_fixed_per_view_across_resamples(tmp_path):
    job = _job(tmp_path)
    for i in range(20):
        assert {sample_params(job, i, a).camera_profile for a in range(4)} == {camera_profile_for(job, i)}


def test_single_camera_has_no_profile_and_unchanged_params(tmp_path):
    single = "camera: {focal_length_mm: 50, distance_m: 1.0}\n"
    job = _job(tmp_path, single, n=5)
    p = sample_params(job, 0)
    assert p.camera_profile is None and "camera_profile" not in p.to_json()


def test_duplicate_profile_names_are_an_error(tmp_path):
    bad = PROFILES.replace("name: rear", "name: selfie")
    with pytest.raises(ConfigError, match="unique"):
        _job(tmp_path, bad)
