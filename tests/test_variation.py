"""Variation and realism (issue 7): subject pose, relights per view, appearance, depth-sensor
simulation. Real Blender (bpy) in-process at tiny sizes; real Kinect frames for the sensor fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from synthgen.rendering.config import ConfigError, DepthSensorConfig, ScanAsset, ScanSize, resolve_job
from synthgen.contract import member_path, read_sample, verify_sample, write_sample
from synthgen.camera import look_at
from synthgen.rendering.blender.calibration import render_calibration
from synthgen.rendering.depth_sensor import hole_statistics, interior, simulate
from synthgen.rendering.sensor_fit import (CALIBRATION_STRIP_ALBEDOS, capture_statistics, fit_dark, fit_sigma,
                                       hole_rate_vs_incidence, noise_vs_depth, sensor_fit_frames)
from synthgen.rendering.sampling import appearance_params, plan, pose_params, sample_params, view_of

from conftest import ROOT

bpy = pytest.importorskip("bpy")

CESIUM = ROOT / "scenes" / "cesium_man" / "CesiumMan.glb"
ROCKETBOX = ROOT / "scenes" / "rocketbox_female_adult_01" / "Female_Adult_01.fbx"
LEE = ROOT / "scenes" / "lee_perry_smith_head"
SENSOR_FIT = ROOT / "tests" / "fixtures" / "sensor_fit"


def _config(tmp_path, **over):
    cfg = {
        "name": "var", "seed": 5, "num_samples": 4,
        "scans": [{"id": "lee", "path": str(LEE / "LeePerrySmith.glb"), "texture": str(LEE / "Map-COL.jpg"),
                   "size": {"height_m": 0.36}}],
        "hdris": {"paths": [str(ROOT / "hdris" / "*.hdr")], "strength": {"dist": "uniform", "low": 0.5, "high": 2}},
        "camera": {"focal_length_mm": 50, "subject_fraction": 0.6},
        "render": {"width": 40, "height": 40, "samples": 4, "adaptive_threshold": 0.05, "denoise": False,
                   "max_bounces": 1},
    }
    cfg.update(over)
    p = tmp_path / "var.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return resolve_job(p)


@pytest.fixture(scope="module")
def renderer():
    from synthgen.rendering.blender import BlenderRenderer

    return BlenderRenderer(threads=2)


def _asset(sid, path, **kw):
    return ScanAsset(id=sid, path=str(path), texture=None, base_color=None, roughness=0.5, normal_map=None,
                     size=ScanSize(height_m=1.7), head_height_m=0.25, weight=1.0, **kw)


def _euler_angle_deg(a):
    """Rotation angle of R = Rz(yaw) Rx(pitch) Ry(roll)."""
    from mathutils import Euler

    R = (Euler((0, 0, math.radians(a["yaw_deg"]))).to_matrix()
         @ Euler((math.radians(a["pitch_deg"]), 0, 0)).to_matrix()
         @ Euler((0, math.radians(a["roll_deg"]), 0)).to_matrix())
    return math.degrees(R.to_quaternion().angle)


@pytest.mark.parametrize("scan", ["cesium", "rocketbox"])
def test_pose_moves_the_body_within_joint_limits(renderer, tmp_path, scan):
    job = _config(tmp_path, pose={"enabled": True})
    path, excl = (CESIUM, ["Icosphere"]) if scan == "cesium" else (ROCKETBOX, [])
    info = renderer.load_scan(_asset(scan, path, exclude_objects=excl), rest_pose=True)
    assert info["armatures"], "rig not found"
    assert not any("Icosphere" in o.name for o in renderer._scan_objects)
    joints = job.config.pose.joints
    rest = renderer.mesh_vertices_world()
    renderer.set_pose(joints, {"subject_yaw_deg": 0.0, "joints": {}})
    assert np.array_equal(renderer.mesh_vertices_world(), rest)  # resetting restores the rest pose
    for view in range(3):
        p = pose_params(job, view, 0)
        rec = renderer.set_pose(joints, p)
        posed = renderer.mesh_vertices_world()
        moved = np.linalg.norm(posed - rest, axis=1)
        assert moved.max() > 0.03, f"pose moved vertices by at most {moved.max()} m"
        assert np.median(moved) < 0.2  # the body is posed, not thrown away
        posed_names = {j["joint"] for j in rec["joints"]}
        assert {"spine", "head", "upper_arm_l", "upper_arm_r", "forearm_l", "forearm_r"} <= posed_names
        for j in rec["joints"]:
            lim = next(c for c in joints if c.name == j["joint"])
            for ax in ("yaw_deg", "pitch_deg", "roll_deg"):
                lo, hi = getattr(lim, ax).bounds()
                assert lo <= j[ax] <= hi, (j, ax)
            # the bone really turned by the recorded rotation (angle is invariant under the frame change)
            arm = next(a for a in renderer._armatures if j["bone"] in a.pose.bones)
            basis = arm.pose.bones[j["bone"]].matrix_basis.to_quaternion()
            assert abs(math.degrees(basis.angle) - _euler_angle_deg(j)) < 0.5, j
        # metric scale is kept: the scan's scale is fixed at import; the height stays plausible
        assert 1.4 < posed[:, 2].max() - posed[:, 2].min() < 1.8


def test_unrigged_scan_gets_subject_yaw(renderer, tmp_path):
    job = _config(tmp_path, pose={"enabled": True, "subject_yaw_deg": 30})
    renderer.load_scan(job.scans[0], rest_pose=True)
    rest = renderer.mesh_vertices_world()
    rec = renderer.set_pose(job.config.pose.joints, pose_params(job, 0, 0))
    assert not rec["rigged"] and rec["subject_yaw_deg"] == 30
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    Rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    np.testing.assert_allclose(renderer.mesh_vertices_world(), rest @ Rz.T, atol=1e-5)
    assert renderer.posed_point([0.0, -0.1, 0.2]) == pytest.approx((Rz @ [0.0, -0.1, 0.2]).tolist(), abs=1e-6)


def test_relights_share_depth_and_mask_and_differ_in_rgb(renderer, tmp_path):
    from synthgen.rendering.worker import render_sample

    job = _config(tmp_path, relights_per_view=3, num_samples=3, pose={"enabled": True, "subject_yaw_deg": {"dist": "uniform", "low": -20, "high": 20}},
                  appearance={"enabled": True}, area_lights={"count": 1},
                  depth_sensor={"enabled": True})
    assert [view_of(job, i) for i in range(4)] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert plan(job, list(range(6))) == {"lee": list(range(6))}
    out = tmp_path / "store"
    recs = [render_sample(renderer, job, i, out)["record"] for i in range(3)]
    keys = [r["key"] for r in recs]
    assert len(set(keys)) == 3
    for r in recs[1:]:
        for m in ("depth.exr", "mask.exr", "depth_sensor.exr"):
            a = member_path(out, r["key"], m).read_bytes()
            b = member_path(out, keys[0], m).read_bytes()
            assert a == b, f"{m} of relight {r['render']['relight_id']} differs from relight 0"
        assert r["render"]["view_id"] == 0 and r["subject_id"] == recs[0]["subject_id"]
        assert r["render"]["pose"] == recs[0]["render"]["pose"]
        assert r["camera"] == recs[0]["camera"]
        assert r["render"]["settings"]["adaptive_threshold"] == 0  # forced off for relights
    assert [r["render"]["relight_id"] for r in recs] == [0, 1, 2]
    lights = [(r["render"]["hdri"]["id"], r["render"]["hdri"]["rotation_deg"], r["render"]["area_lights"][0]["temperature_k"])
              for r in recs]
    assert len(set(lights)) == 3
    rgbs = [read_sample(out, k).rgb for k in keys]
    for rgb in rgbs[1:]:
        assert np.abs(rgb - rgbs[0]).mean() > 1e-3
    for k in keys:
        assert verify_sample(out, k) == []
    s = read_sample(out, keys[0])
    sensor = read_sample(out, keys[0]).record["files"]["depth_sensor.exr"]
    assert sensor["file"] == f"{keys[0]}.depth_sensor.exr"
    from synthgen.exr import read_exr

    zs = read_exr(member_path(out, keys[0], "depth_sensor.exr"), ["Y"])["Y"]
    assert zs.dtype == np.float32 and zs.shape == s.depth.shape
    valid = zs > 0
    assert valid.any() and np.all(s.depth[valid] > 0)  # no depth where the clean depth has none
    assert np.allclose(zs[valid] * 1000, np.round(zs[valid] * 1000), atol=1e-3)  # millimetre steps
    ds = recs[0]["render"]["depth_sensor"]
    assert ds["surface"] == "cycles_diffuse_glossy_color" and ds["stats"]["surface_inputs"] is True
    assert ds["params"] == DepthSensorConfig().model_dump(exclude={"enabled"})
    assert 0.05 < ds["stats"]["mean_albedo"] < 0.9 and ds["stats"]["dark_holes"] >= 0
    assert ds["stats"]["hole_fraction"] == pytest.approx((zs[s.depth > 0] <= 0).mean(), abs=1e-6)
    a = recs[0]["render"]["appearance"]
    assert a["hue"] == recs[0]["render"]["params"]["appearance"]["hue"]
    # tampering with the extra member is caught
    member_path(out, keys[2], "depth_sensor.exr").write_bytes(b"x")
    assert any("depth_sensor.exr" in p for p in verify_sample(out, keys[2]))


def test_appearance_parameters_stay_within_bounds(tmp_path):
    bounds = {"hue": [0.45, 0.55], "saturation": [0.7, 1.3], "value": [0.6, 1.4], "roughness": [0.2, 0.8]}
    job = _config(tmp_path, appearance={"enabled": True, **{k: {"dist": "uniform", "low": lo, "high": hi}
                                                          for k, (lo, hi) in bounds.items()}})
    seen = {k: [] for k in bounds}
    for v in range(300):
        a = appearance_params(job, v, 0)
        for k, (lo, hi) in bounds.items():
            assert lo <= a[k] <= hi
            seen[k].append(a[k])
        assert a["skin_tone_rgb"] in job.config.appearance.skin_tones
    for k, (lo, hi) in bounds.items():  # the bounds are used, not a narrow corner of them
        assert np.ptp(seen[k]) > 0.8 * (hi - lo)
    with pytest.raises(ConfigError, match="appearance.value"):
        _config(tmp_path, appearance={"value": {"dist": "normal", "mean": 1, "std": 0.2}})
    with pytest.raises(ConfigError, match="pose.joints"):
        _config(tmp_path, pose={"joints": [{"name": "head", "bones": ["head"], "yaw_deg": {"dist": "normal", "mean": 0, "std": 9}}]})


def test_appearance_is_applied_to_materials(renderer, tmp_path):
    job = _config(tmp_path, appearance={"enabled": True})
    renderer.load_scan(_asset("rocketbox", ROCKETBOX), appearance=True)  # missing textures -> skin
    a = appearance_params(job, 0, 0)
    rec = renderer.set_appearance(a["hue"], a["saturation"], a["value"], a["roughness"], a["skin_tone_rgb"], 0.15)
    assert rec["skin_material"] and rec["materials"] >= 1
    for hsv in renderer._hsv_nodes:
        assert hsv.inputs["Hue"].default_value == pytest.approx(a["hue"])
        assert hsv.inputs["Value"].default_value == pytest.approx(a["value"])
    for bsdf, hsv in renderer._skin_bsdfs:
        assert tuple(hsv.inputs["Color"].default_value)[:3] == pytest.approx(a["skin_tone_rgb"])


def test_features_off_keep_parameters_unchanged(tmp_path):
    """Variation off (the default): no new parameter keys, so existing jobs render as before."""
    job = _config(tmp_path)
    p = sample_params(job, 2, 0)
    assert not {"pose", "appearance", "area_lights", "view_id", "relight_id"} & set(p)


@pytest.fixture(scope="module")
def real_sensor():
    """Statistics of the real Kinect v1 frames of tests/fixtures/sensor_fit (same estimators as the fit)."""
    frames = sensor_fit_frames(SENSOR_FIT)
    assert len(frames) == 6 and sum(1 for f in frames if f["rgb"]) == 3
    cs = capture_statistics(frames)
    return {"sigma": fit_sigma(cs["noise_bins"]), "holes": cs["holes"], "incidence": cs["incidence"],
            "albedo": cs["albedo"]}


@pytest.fixture(scope="module")
def calibration(renderer):
    """The calibration scene rendered at the Kinect's 640x480 with the surface passes (one Cycles sample)."""
    return render_calibration(renderer, 640, 480)


def _grazing_excess(rows, lo=75):
    """Pooled hole rate of the incidence bins >= lo degrees minus the 20-60 degree rate."""
    def rate(sel):
        return sum(r[2] for r in rows if sel(r)) / max(sum(r[3] for r in rows if sel(r)), 1)
    return rate(lambda r: r[0] >= lo) - rate(lambda r: r[0] >= 20 and r[1] <= 60)


def test_sensor_simulation_matches_fitted_real_statistics(calibration, real_sensor):
    (a_real, b_real), real = real_sensor["sigma"], real_sensor["holes"]
    d = DepthSensorConfig()
    params = d.model_dump(exclude={"enabled"})
    # the documented defaults are the fit to the fixture frames (noise and dark-hole curve are direct fits)
    assert d.sigma_b_per_m == pytest.approx(b_real, rel=0.05)
    assert d.sigma_a_m == pytest.approx(a_real, rel=0.1)
    dark = fit_dark(real_sensor["albedo"])
    assert d.base_dropout == pytest.approx(dark["base_dropout"], abs=0.002)
    assert d.dark_hole_prob == pytest.approx(dark["dark_hole_prob"], abs=0.005)
    assert d.dark_albedo == pytest.approx(dark["dark_albedo"], rel=0.05) and d.dark_power == dark["dark_power"]
    depth, K = calibration["depth"], calibration["K"]
    zs, stats = simulate(depth, K, np.random.default_rng(1), **params)
    assert stats["surface_inputs"] is False and stats["dark_holes"] == 0
    sim = hole_statistics(zs)
    assert sim["interior_hole_fraction"] == pytest.approx(real["interior_hole_fraction"], abs=0.01)
    assert sim["edge_band_hole_fraction"] == pytest.approx(real["edge_band_hole_fraction"], abs=0.03)
    a_sim, b_sim = fit_sigma([x for x in noise_vs_depth(zs, bin_m=0.25, min_count=200) if x[0] < 5])
    assert b_sim == pytest.approx(b_real, rel=0.15)
    # grazing: the same plane-fit estimator on both; excess hole rate beyond 75 degrees
    ex_real = _grazing_excess(real_sensor["incidence"])
    ex_sim = _grazing_excess(hole_rate_vs_incidence(zs, K))
    assert 0.05 < ex_real < 0.15
    assert ex_sim == pytest.approx(ex_real, abs=0.03)
    # clean depth untouched; noise and holes off give the clean depth back (up to mm quantisation)
    z0, _ = simulate(depth, K, np.random.default_rng(1), **{**params, "sigma_a_m": 0, "sigma_b_per_m": 0,
                                                            "dropout": 0, "edge_hole_prob": 0, "grazing_width_deg": 0})
    ok = z0 > 0
    assert np.abs(z0[ok] - depth[ok]).max() <= 0.0005 + 1e-6
    assert (z0[(depth > 0)] <= 0).mean() < 0.05  # only grazing (> 90 deg: none) and range holes left


def test_dark_and_specular_surfaces_lose_more_depth(calibration, real_sensor):
    """Calibration render with Cycles' colour passes: wall strips of albedo 0.01 ... 0.8, a polished
    metal sphere and a white box. Dark and specular surfaces get more holes than bright diffuse ones,
    at the rates the fitted model and the real frames give."""
    d = DepthSensorConfig().model_dump(exclude={"enabled"})
    albedo, spec, strips = calibration["albedo"], calibration["specularity"], calibration["strips"]
    for i, a in enumerate(CALIBRATION_STRIP_ALBEDOS):  # the passes give the material's albedo
        assert np.median(albedo[strips == i]) == pytest.approx(a, rel=0.05, abs=0.002)
    metal = (spec > 0.95) & (strips < 0)
    white = (np.abs(albedo - 0.8) < 0.05) & (spec < 0.2) & (strips < 0)
    assert metal.sum() > 10000 and white.sum() > 10000
    zs, stats = simulate(calibration["depth"], calibration["K"], np.random.default_rng(2), albedo=albedo,
                         specularity=spec, **d)
    assert stats["surface_inputs"] and stats["dark_holes"] > 0 and stats["specular_holes"] > 0
    inner = interior(zs)
    hole = zs <= 0

    def rate(sel):
        return float(hole[sel & inner].mean())

    dark, bright = rate(strips == 0), rate(strips == len(CALIBRATION_STRIP_ALBEDOS) - 1)
    assert dark > bright + 0.05, (dark, bright)
    assert rate(metal) > rate(white) + 0.3, (rate(metal), rate(white))
    # against the real frames: dark (albedo < 0.03) and bright (> 0.3) hole rates, same binning
    rows = real_sensor["albedo"]
    real_dark = sum(r[2] for r in rows if r[1] <= 0.0317) / sum(r[3] for r in rows if r[1] <= 0.0317)
    real_bright = sum(r[2] for r in rows if r[0] >= 0.316) / sum(r[3] for r in rows if r[0] >= 0.316)
    assert dark == pytest.approx(real_dark, abs=0.03) and bright == pytest.approx(real_bright, abs=0.015)
    # without the passes: uniform dropout, so dark and bright strips look alike
    z2, _ = simulate(calibration["depth"], calibration["K"], np.random.default_rng(2), **d)
    inner2, hole2 = interior(z2), z2 <= 0
    assert abs(hole2[(strips == 0) & inner2].mean() - hole2[(strips == 4) & inner2].mean()) < 0.03
    with pytest.raises(ValueError, match="both"):
        simulate(calibration["depth"], calibration["K"], np.random.default_rng(2), albedo=albedo, **d)


def test_surface_passes_only_when_asked(renderer, tmp_path):
    """The plain render is unchanged by the depth-sensor passes, which appear only on request."""
    job = _config(tmp_path)
    renderer.load_scan(job.scans[0])
    renderer.set_hdri(job.hdris[0].path, 0.0, 1.0)
    renderer.set_camera(look_at(np.array([0.0, -0.8, 0.25]), np.array([0.0, 0.0, 0.2])), 50, 36)
    renderer.configure(40, 40, 4, 0, False, 1)
    plain = renderer.render(3)
    assert set(plain) == {"rgb", "depth", "mask", "seconds"}
    passes = renderer.render(3, surface_passes=True)
    for k in ("rgb", "depth", "mask"):
        assert np.array_equal(plain[k], passes[k]), k
    sel = passes["mask"] > 0.99
    assert sel.sum() > 50
    dc, gc = passes["diffuse_color"][sel], passes["glossy_color"][sel]
    assert 0.02 < np.median(dc.mean(-1)) < 0.9 and np.median(gc.mean(-1)) < 0.2  # textured skin: diffuse
    assert np.all(passes["diffuse_color"][passes["mask"] == 0] == 0)
    assert set(renderer.render(3)) == set(plain)  # switched off again


def test_write_sample_extra_member_is_backward_compatible(tmp_path):
    from synthgen.contract import ContractError

    rgb = np.full((4, 5, 3), 0.5, np.float32)
    depth = np.ones((4, 5), np.float32)
    mask = np.ones((4, 5), np.float32)
    rec = {"source": "synthetic", "subject_id": "s", "synthgen_version": "0",
           "camera": {"K": np.eye(3).tolist(), "camera_to_world": None}, "depth": {}}
    try:
        r = write_sample(tmp_path, "a", rgb, depth, mask, rec)
    except ContractError:
        pytest.skip("minimal record rejected by SampleRecord")
    assert set(r["files"]) == {"rgb.exr", "depth.exr", "mask.exr"}
    r = write_sample(tmp_path, "b", rgb, depth, mask, rec, extra={"depth_sensor.exr": depth * 2})
    assert "depth_sensor.exr" in r["files"] and verify_sample(tmp_path, "b") == []
    with pytest.raises(ContractError, match="extra member"):
        write_sample(tmp_path, "c", rgb, depth, mask, rec, extra={"../x.exr": depth})


def test_camera_realism_keeps_clean_ground_truth(renderer, tmp_path):
    from synthgen.rendering.worker import render_sample

    plain = _config(tmp_path, render={"width": 40, "height": 40, "samples": 4, "adaptive_threshold": 0,
                                      "denoise": False, "max_bounces": 1, "auto_exposure": False})
    real = _config(tmp_path, render=plain.config.render.model_dump(), camera_realism={
        "dof": True, "f_stop": 1.4, "white_balance": True, "sensor_noise": True,
        "wb_red_gain": {"dist": "uniform", "low": 0.8, "high": 0.9}})
    a = render_sample(renderer, plain, 1, tmp_path / "plain")["record"]
    b = render_sample(renderer, real, 1, tmp_path / "real")["record"]
    for m in ("depth.exr", "mask.exr"):
        assert a["files"][m]["sha256"] == b["files"][m]["sha256"], m
    cr = b["render"]["camera_realism"]
    assert cr["dof"]["f_stop"] == 1.4 and cr["dof"]["focus_distance_m"] == pytest.approx(b["render"]["camera"]["distance_m"])
    assert 0.8 <= cr["white_balance"]["gains_rgb"][0] <= 0.9 and cr["white_balance"]["gains_rgb"][1] == 1.0
    assert 1e-4 <= cr["sensor_noise"]["shot_noise_k"] <= 4e-3
    ra, rb = read_sample(tmp_path / "plain", a["key"]).rgb, read_sample(tmp_path / "real", b["key"]).rgb
    assert np.abs(ra - rb).mean() > 1e-3
    assert "camera_realism" not in a["render"]
