"""Motion blur (camera shake) and poses from embedded animation frames (issue 7).
Real Blender (bpy) in-process at tiny sizes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import yaml

from synthgen.camera import shake_blur_px, shake_pose
from synthgen.rendering.config import ConfigError, ScanAsset, ScanSize, resolve_job
from synthgen.contract import member_path, read_sample
from synthgen.rendering.sampling import pose_params, sample_params

from conftest import ROOT

bpy = pytest.importorskip("bpy")

CESIUM = ROOT / "scenes" / "cesium_man" / "CesiumMan.glb"
ROCKETBOX = ROOT / "scenes" / "rocketbox_female_adult_01" / "Female_Adult_01.fbx"
LEE = ROOT / "scenes" / "lee_perry_smith_head"
LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def _config(tmp_path, name="mo", **over):
    cfg = {
        "name": name, "seed": 5, "num_samples": 4,
        "scans": [{"id": "lee", "path": str(LEE / "LeePerrySmith.glb"), "texture": str(LEE / "Map-COL.jpg"),
                   "size": {"height_m": 0.36}}],
        "hdris": {"paths": [str(ROOT / "hdris" / "studio_small_03_1k.hdr")]},
        "camera": {"focal_length_mm": 50, "subject_fraction": 0.6},
        "render": {"width": 64, "height": 64, "samples": 8, "adaptive_threshold": 0, "denoise": True,
                   "max_bounces": 1, "auto_exposure": False},
    }
    cfg.update(over)
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return resolve_job(p)


@pytest.fixture
def renderer():
    """A fresh renderer per test (factory settings), so a test's reference renders start clean."""
    from synthgen.rendering.blender import BlenderRenderer

    return BlenderRenderer(threads=2)


def _asset(sid, path, **kw):
    return ScanAsset(id=sid, path=str(path), texture=None, base_color=None, roughness=0.5, normal_map=None,
                     size=ScanSize(height_m=1.7), head_height_m=0.25, weight=1.0, **kw)


def _sha(store, key, member):
    return hashlib.sha256(member_path(store, key, member).read_bytes()).hexdigest()


def _gradient_energy(rgb):
    y = rgb @ LUMA
    return float((np.diff(y, axis=0) ** 2).mean() + (np.diff(y, axis=1) ** 2).mean())


def _centroid(rgb):
    y = rgb @ LUMA
    yy, xx = np.mgrid[: y.shape[0], : y.shape[1]]
    return np.array([(y * xx).sum(), (y * yy).sum()]) / y.sum()


# ------------------------------------------------------------------ motion blur

def test_motion_blur_blurs_rgb_only_and_leaves_no_trace(renderer, tmp_path):
    from synthgen.rendering.worker import render_sample

    plain = _config(tmp_path)
    shaky = _config(tmp_path, name="shaky", camera_realism={
        "motion_blur": True, "shutter_s": 0.1, "shake_angular_speed_deg_s": 30, "shake_translation_speed_m_s": 0.0})
    ref = render_sample(renderer, plain, 1, tmp_path / "ref")["record"]       # fresh renderer
    mb = render_sample(renderer, shaky, 1, tmp_path / "mb")["record"]
    after = render_sample(renderer, plain, 1, tmp_path / "after")["record"]   # same renderer, after the blur

    # nothing of the blur pass is left: the next clean sample is byte-identical to the fresh render
    for m in ("rgb.exr", "depth.exr", "mask.exr"):
        assert _sha(tmp_path / "after", after["key"], m) == _sha(tmp_path / "ref", ref["key"], m), m
    assert renderer.camera.animation_data is None and not renderer.scene.render.use_motion_blur
    assert renderer.camera.rotation_mode == "XYZ" and len(bpy.data.actions) == 0
    # depth and mask are the clean pinhole ground truth
    for m in ("depth.exr", "mask.exr"):
        assert _sha(tmp_path / "mb", mb["key"], m) == _sha(tmp_path / "ref", ref["key"], m), m

    rec = mb["render"]["camera_realism"]["motion_blur"]
    p = mb["render"]["params"]["camera_realism"]["motion_blur"]
    assert rec["shutter_s"] == p["shutter_s"] == 0.1
    assert rec["angular_velocity_deg_s"] == p["angular_velocity_deg_s"]
    assert np.linalg.norm(p["angular_velocity_deg_s"]) == pytest.approx(30)
    assert rec["translation_velocity_m_s"] == [0.0, 0.0, 0.0] or np.allclose(rec["translation_velocity_m_s"], 0)
    assert rec["rotation_during_exposure_deg"] == pytest.approx(3.0)
    K = np.array(mb["camera"]["K"])
    blur = shake_blur_px(K, mb["render"]["camera"]["distance_m"], p["angular_velocity_deg_s"], [0, 0, 0], 0.1)
    assert rec["centre_blur_px"] == pytest.approx(blur) and blur > 3

    a = read_sample(tmp_path / "ref", ref["key"]).rgb
    b = read_sample(tmp_path / "mb", mb["key"]).rgb
    assert np.abs(a - b).mean() > 1e-3
    assert _gradient_energy(b) < 0.7 * _gradient_energy(a)  # edges smeared
    # the clean pose is the centre of the exposure: the blurred image is not shifted along the streak
    # (a shutter starting at the clean pose would move the centroid by about blur / 2)
    assert np.linalg.norm(_centroid(b) - _centroid(a)) < 0.2 * blur


def test_dof_and_motion_blur_share_one_extra_pass(renderer, tmp_path):
    """DOF + motion blur: one clean pass (depth, mask) plus a single RGB pass; both recorded; the
    animated CesiumMan keeps still during the shutter (only the camera moves)."""
    from synthgen.rendering.worker import render_sample

    job = _config(tmp_path, scans=[{"id": "cesium", "path": str(CESIUM), "size": {"height_m": 1.75},
                                    "exclude_objects": ["Icosphere"]}],
                  camera={"focal_length_mm": 35, "subject_fraction": 0.8, "target": "center"},
                  pose={"enabled": True, "source": "animation", "joints": []},
                  camera_realism={"dof": True, "f_stop": 2.0, "motion_blur": True, "white_balance": True},
                  render={"width": 32, "height": 40, "samples": 4, "adaptive_threshold": 0, "denoise": False,
                          "max_bounces": 1})
    calls = []
    real_render = renderer.render

    def counting_render(*a, **k):
        calls.append(renderer.scene.render.use_motion_blur)
        return real_render(*a, **k)

    renderer.render = counting_render
    rec = render_sample(renderer, job, 0, tmp_path / "s")["record"]
    assert calls == [False, True]  # clean pass, then one pass with both effects
    cr = rec["render"]["camera_realism"]
    assert set(cr) == {"dof", "motion_blur", "white_balance"} and cr["dof"]["f_stop"] == 2.0
    assert 1 / 250 <= cr["motion_blur"]["shutter_s"] <= 1 / 15
    anim = rec["render"]["pose"]["animation"]
    assert anim["action"] == "Anim_0" and anim["frame_range"] == [1, 48] and 1 <= anim["frame"] <= 48
    assert rec["render"]["params"]["pose"]["animation_phase"] == anim["phase"]
    assert renderer.camera.animation_data is None and not renderer.scene.render.use_motion_blur


def test_motion_blur_parameters_and_config(tmp_path):
    base = {"dof": True, "white_balance": True, "sensor_noise": True}
    job = _config(tmp_path, camera_realism=base)
    mb = _config(tmp_path, name="mb", camera_realism={**base, "motion_blur": True})
    speeds, dirs = [], []
    for i in range(200):
        a, b = sample_params(job, i)["camera_realism"], sample_params(mb, i)["camera_realism"]
        m = b.pop("motion_blur")
        assert a == b  # switching motion blur on leaves the other effects' values unchanged
        assert 1 / 250 <= m["shutter_s"] <= 1 / 15
        w, v = np.array(m["angular_velocity_deg_s"]), np.array(m["translation_velocity_m_s"])
        assert 0.5 <= np.linalg.norm(w) <= 8 and 0.002 <= np.linalg.norm(v) <= 0.05
        speeds.append(np.linalg.norm(w))
        dirs.append(w / np.linalg.norm(w))
    assert np.abs(np.mean(dirs, axis=0)).max() < 0.15  # random axis, no preferred direction
    assert sample_params(mb, 7) == sample_params(mb, 7)
    with pytest.raises(ConfigError, match="camera_realism.shutter_s"):
        _config(tmp_path, camera_realism={"motion_blur": True, "shutter_s": {"dist": "uniform", "low": -1, "high": 1}})
    with pytest.raises(ConfigError, match="pose.source"):
        _config(tmp_path, pose={"enabled": True, "source": "mocap"})


def test_shake_pose_is_centred_constant_velocity():
    from synthgen.camera import look_at

    c2w = look_at(np.array([0.3, -1.0, 1.5]), np.array([0.0, 0.0, 1.6]), roll_deg=10)
    w, v, t = np.array([3.0, -4.0, 12.0]), np.array([0.01, 0.02, -0.03]), 0.02
    assert np.array_equal(shake_pose(c2w, w, v, 0.0), c2w)
    d_fwd = np.linalg.inv(c2w) @ shake_pose(c2w, w, v, t)    # motion in the camera's own axes
    d_back = np.linalg.inv(c2w) @ shake_pose(c2w, w, v, -t)
    np.testing.assert_allclose(d_fwd[:3, 3], v * t, atol=1e-12)
    np.testing.assert_allclose(d_back[:3, 3], -v * t, atol=1e-12)
    R = d_fwd[:3, :3]
    assert np.degrees(np.arccos((np.trace(R) - 1) / 2)) == pytest.approx(np.linalg.norm(w) * t, rel=1e-6)
    np.testing.assert_allclose(R @ (w / np.linalg.norm(w)), w / np.linalg.norm(w), atol=1e-12)  # about w
    np.testing.assert_allclose(d_back[:3, :3], R.T, atol=1e-12)  # symmetric about the clean pose


# ------------------------------------------------------------------ animation frames

def test_animation_frames_pose_cesium_man(renderer, tmp_path):
    job = _config(tmp_path, pose={"enabled": True, "source": "animation", "joints": []})
    info = renderer.load_scan(_asset("cesium", CESIUM, exclude_objects=["Icosphere"]), rest_pose=True,
                              keep_animation=True)
    assert info["animations"] == [{"armature": "Armature", "action": "Anim_0", "frame_range": [1, 48]}]
    rest = renderer.mesh_vertices_world()
    frames = {}
    for phase, frame in ((0.0, 1), (0.5, 25), (0.999, 48)):
        rec = renderer.set_pose([], {"subject_yaw_deg": 0.0, "joints": {}, "animation_phase": phase})
        assert rec["animation"]["frame"] == frame and rec["animation"]["action"] == "Anim_0" and not rec["warnings"]
        frames[frame] = renderer.mesh_vertices_world()
    assert np.abs(frames[1] - rest).max() > 0.1
    d = np.linalg.norm(frames[25] - frames[1], axis=1)
    assert d.max() > 0.1, "two frames of the walk should move the limbs"
    assert 1.5 < np.ptp(frames[25][:, 2]) < 1.9  # scaled once in the rest pose, stays metric
    # determinism: same view -> same phase -> same frame and the very same vertices
    p = pose_params(job, 3, 0)
    assert p == pose_params(job, 3, 0) and 0 <= p["animation_phase"] < 1
    r1 = renderer.set_pose([], p)
    v1 = renderer.mesh_vertices_world()
    renderer.set_pose([], pose_params(job, 4, 0))
    r2 = renderer.set_pose([], p)
    assert r1 == r2 and np.array_equal(v1, renderer.mesh_vertices_world())
    got = {renderer.set_pose([], pose_params(job, v, 0))["animation"]["frame"] for v in range(60)}
    assert got <= set(range(1, 49)) and len(got) > 25  # spread over the walk cycle
    # the configured joints perturb the animation frame
    joints = _config(tmp_path, name="j", pose={"enabled": True, "source": "animation"}).config.pose.joints
    renderer.set_pose([], {"subject_yaw_deg": 0.0, "joints": {}, "animation_phase": 0.5})
    pj = pose_params(_config(tmp_path, name="j2", pose={"enabled": True, "source": "animation"}), 0, 0)
    rec = renderer.set_pose(joints, {**pj, "animation_phase": 0.5})
    assert rec["animation"]["frame"] == 25 and {"head", "spine"} <= {j["joint"] for j in rec["joints"]}
    moved = np.linalg.norm(renderer.mesh_vertices_world() - frames[25], axis=1)
    assert 0.01 < moved.max()


def test_animation_kept_only_when_asked_and_fallback(renderer):
    cesium = _asset("cesium", CESIUM, exclude_objects=["Icosphere"])
    assert renderer.load_scan(cesium, rest_pose=True)["animations"] == []
    rec = renderer.set_pose([], {"subject_yaw_deg": 0.0, "joints": {}, "animation_phase": 0.5})
    assert rec["animation"] is None and "no pose animation" in rec["warnings"][0]
    # the cache key includes keep_animation: the scan is re-imported with its action kept
    assert renderer.load_scan(cesium, rest_pose=True, keep_animation=True)["animations"]
    bpy.data.orphans_purge(do_local_ids=True, do_linked_ids=True, do_recursive=True)
    assert renderer.set_pose([], {"subject_yaw_deg": 0.0, "joints": {}, "animation_phase": 0.5})["animation"]
    # Rocketbox's only action moves the object, no bone: not a pose animation -> rest pose + warning
    info = renderer.load_scan(_asset("rocketbox", ROCKETBOX), rest_pose=True, keep_animation=True)
    assert info["animations"] == [] and "Anim_0" not in bpy.data.actions  # the scan swap removed it
    rest = renderer.mesh_vertices_world()
    rec = renderer.set_pose([], {"subject_yaw_deg": 0.0, "joints": {}, "animation_phase": 0.3})
    assert rec["animation"] is None and rec["warnings"]
    assert np.array_equal(renderer.mesh_vertices_world(), rest)
