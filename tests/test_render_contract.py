"""Depth, camera, mask and scale contract of the renderer, with real Blender (bpy) in-process."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from synthgen.camera import intrinsics, look_at, project
from synthgen.rendering.config import resolve_job
from synthgen.contract import read_sample, verify_sample

from conftest import SMOKE

bpy = pytest.importorskip("bpy")


@pytest.fixture(scope="module")
def renderer():
    from synthgen.rendering.blender import BlenderRenderer

    return BlenderRenderer(threads=2)


def _primitive_scene(renderer):
    """Drop the scan, return the renderer configured for flat-lit primitives."""
    renderer.clear_scan()
    for o in list(bpy.data.objects):
        if o.name.startswith("test_"):
            bpy.data.objects.remove(o, do_unlink=True)
    renderer.configure(65, 49, samples=1, adaptive_threshold=0, denoise=False, max_bounces=0)


def _add(obj_name: str):
    o = bpy.context.active_object
    o.name = obj_name
    return o


def test_plane_gives_planar_depth_everywhere(renderer):
    _primitive_scene(renderer)
    bpy.ops.mesh.primitive_plane_add(size=200, location=(0, 4.5, 0), rotation=(math.pi / 2, 0, 0))
    _add("test_plane")
    renderer.set_hdri(str(SMOKE.parent.parent / "hdris" / "studio_small_03_1k.hdr"), 0, 1)
    c2w = look_at(np.zeros(3), np.array([0, 1.0, 0]))
    renderer.set_camera(c2w, 24.0, 36.0)  # wide: corners are ~37° off axis, range would be 5.6 m
    out = renderer.render(seed=1)
    d = out["depth"]
    assert d.shape == (49, 65) and d.dtype == np.float32
    assert np.all(np.abs(d / 4.5 - 1) < 1e-4), (d.min(), d.max())
    for corner in (d[0, 0], d[0, -1], d[-1, 0], d[-1, -1]):
        assert abs(corner - 4.5) < 4.5e-4
    assert np.all(out["mask"] > 0.999)


def test_sphere_depth_at_centre_pixel(renderer):
    _primitive_scene(renderer)
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.5, location=(0, 3.0, 0), segments=128, ring_count=64)
    _add("test_sphere")
    bpy.ops.object.shade_smooth()
    c2w = look_at(np.zeros(3), np.array([0, 1.0, 0]))
    renderer.set_camera(c2w, 50.0, 36.0)
    out = renderer.render(seed=1)
    d = out["depth"]
    centre = d[24, 32]  # principal point (W-1)/2, (H-1)/2 = (32, 24)
    assert abs(centre - 2.5) / 2.5 < 1e-3, centre
    assert d[0, 0] == 0 and out["mask"][0, 0] == 0  # background: depth 0, mask 0
    # analytic planar depth of the sphere along pixel rays, away from the silhouette
    K = intrinsics(50.0, 36.0, 65, 49)
    v, u = np.mgrid[0:49, 0:65]
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, float)], -1)
    # ray t*(x,y,1) hits |p - (0,0,3)| = 0.5 ; planar depth is t
    a = (rays ** 2).sum(-1)
    b = -2 * 3.0
    c = 9.0 - 0.25
    disc = b * b - 4 * a * c
    inside = disc > 0.3  # disc is at most 1 (on axis) and 0 at the silhouette: well inside
    t = (-b - np.sqrt(np.where(inside, disc, 0))) / (2 * a)
    assert inside.sum() > 50
    assert np.max(np.abs(d[inside] - t[inside]) / t[inside]) < 5e-3


@pytest.fixture(scope="module")
def head_sample(renderer, tmp_path_factory):
    """One 128×128 render of the LeePerrySmith head, written through the contract."""
    from synthgen.rendering.worker import render_sample

    _primitive_scene(renderer)
    job = resolve_job(SMOKE, {"render.width": 128, "render.height": 128, "render.samples": 8,
                               "scans": yaml.safe_load(SMOKE.read_text())["scans"][:1]})
    out = tmp_path_factory.mktemp("head")
    res = render_sample(renderer, job, 0, out)
    return job, out, res


def test_camera_record_reprojects_scan_vertices(renderer, head_sample):
    job, out, res = head_sample
    _check_reprojection(read_sample(out, res["key"]), renderer.mesh_vertices_world())


def _check_reprojection(s, verts):
    """Visible mesh vertices project, through the record's K and camera-to-world, onto pixels whose
    depth equals their camera z (visibility by Blender ray casts, independent of the depth pass)."""
    cam = s.record["camera"]
    K, c2w = np.array(cam["K"]), np.array(cam["camera_to_world"])
    W, H = s.record["image"]["width"], s.record["image"]["height"]
    assert math.isclose(K[0, 0], cam["focal_length_mm"] * W / cam["sensor_width_mm"], rel_tol=1e-12)
    assert K[0, 2] == (W - 1) / 2 and K[1, 2] == (H - 1) / 2
    uv, z = project(verts, K, c2w)
    px = np.round(uv).astype(int)
    inb = (px[:, 0] >= 2) & (px[:, 0] < W - 2) & (px[:, 1] >= 2) & (px[:, 1] < H - 2) & (z > 0)
    dg = bpy.context.evaluated_depsgraph_get()
    from mathutils import Vector

    origin = c2w[:3, 3]
    idx = np.flatnonzero(inb)[:: max(1, inb.sum() // 800)]
    visible = []
    for i in idx:
        dvec = verts[i] - origin
        dist = np.linalg.norm(dvec)
        hit, loc, *_ = bpy.context.scene.ray_cast(dg, Vector(origin), Vector(dvec / dist), distance=dist + 1e-3)
        if hit and np.linalg.norm(np.array(loc) - verts[i]) < 2e-3:
            visible.append(i)
    visible = np.array(visible)
    assert len(visible) > 100
    # keep vertices whose 3x3 pixel neighbourhood is fully covered (not on a silhouette) and free of
    # depth discontinuities (nose over cheek), where a pixel's depth is not one surface's
    m, d = s.mask, s.depth
    cov = np.array([m[y - 1:y + 2, x - 1:x + 2].min() for x, y in px[visible]])
    smooth = np.array([np.ptp(d[y - 1:y + 2, x - 1:x + 2]) < 0.02 * max(d[y, x], 1e-6) for x, y in px[visible]])
    sel = visible[(cov > 0.99) & smooth]
    rel = np.abs(s.depth[px[sel, 1], px[sel, 0]] - z[sel]) / z[sel]
    assert len(sel) > 80
    assert np.median(rel) < 0.003 and np.mean(rel < 0.01) > 0.95, (np.median(rel), np.mean(rel < 0.01))


def test_mask_agrees_with_depth(head_sample):
    job, out, res = head_sample
    _check_mask_against_depth(out, res["key"])


def _check_mask_against_depth(out, key):
    s = read_sample(out, key)
    valid = s.depth > 0
    from scipy.ndimage import binary_erosion

    interior = binary_erosion(valid, iterations=2)
    background = binary_erosion(~valid, iterations=2)
    assert interior.sum() > 500 and background.sum() > 500
    assert s.mask[interior].min() > 0.95
    assert s.mask[background].max() < 0.05
    edge = (s.mask > 0.05) & (s.mask < 0.95)
    assert edge.sum() > 0, "mask should be anti-aliased at the silhouette"
    assert verify_sample(out, key) == []


def test_scan_is_normalised_to_metric_height(renderer, head_sample):
    job, out, res = head_sample
    s = read_sample(out, res["key"])
    want = job.scans[0].size.height_m
    verts = renderer.mesh_vertices_world()
    assert abs((verts[:, 2].max() - verts[:, 2].min()) - want) < 1e-6
    assert abs(s.record["render"]["scan"]["scale_applied"] * 7.945 - want) / want < 0.01  # LPS is ~7.945 units tall
    # back-project the depth map: the subject's metric extent comes out of the depth itself
    K, c2w = np.array(s.record["camera"]["K"]), np.array(s.record["camera"]["camera_to_world"])
    v, u = np.nonzero(s.depth > 0)
    zz = s.depth[v, u]
    pc = np.stack([(u - K[0, 2]) / K[0, 0] * zz, (v - K[1, 2]) / K[1, 1] * zz, zz], -1)
    pw = pc @ c2w[:3, :3].T + c2w[:3, 3]
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(verts).query(pw)
    assert np.median(dist) < 0.004, np.median(dist)  # depth lands on the metric mesh surface
    # the same cloud with depth off by 5 % would miss the surface by centimetres
    dist_wrong, _ = cKDTree(verts).query(pc * 1.05 @ c2w[:3, :3].T + c2w[:3, 3])
    assert np.median(dist_wrong) > 3 * np.median(dist)
    depth_range = zz.max() - zz.min()
    assert 0.05 < depth_range < np.linalg.norm(np.ptp(verts, axis=0))  # a head's relief, in metres


def _tiny_job(**overrides):
    base = {"render.width": 48, "render.height": 48, "render.samples": 2}
    base.update(overrides)
    return resolve_job(SMOKE, base)


@pytest.mark.parametrize("ext", [".obj", ".ply", ".gltf"])
def test_imports_obj_ply_gltf_and_normalises_them(renderer, tmp_path, ext):
    """Export the head scan to another format with Blender, then load it like a user's scan."""
    from synthgen.rendering.config import ScanAsset, ScanSize

    job = _tiny_job()
    lps = job.scans[0]
    renderer.load_scan(lps)
    bpy.ops.object.select_all(action="DESELECT")
    for o in renderer._meshes:
        o.select_set(True)
    path = str(tmp_path / f"head{ext}")
    if ext == ".obj":
        bpy.ops.wm.obj_export(filepath=path, export_selected_objects=True, export_materials=False)
    elif ext == ".ply":
        bpy.ops.wm.ply_export(filepath=path, export_selected_objects=True)
    else:
        bpy.ops.export_scene.gltf(filepath=path, export_format="GLTF_SEPARATE", use_selection=True)
    asset = ScanAsset(id=f"head_{ext[1:]}", path=path, texture=lps.texture, base_color=None, roughness=0.5,
                      normal_map=None, size=ScanSize(height_m=0.3), head_height_m=0.24, weight=1)
    info = renderer.load_scan(asset)
    assert info["id"] == asset.id and info["num_vertices"] >= 9000
    assert abs(info["bbox_max_m"][2] - 0.3) < 1e-6 and abs(info["bbox_min_m"][2]) < 1e-6


def test_unit_size_rule_records_scale(renderer):
    from synthgen.rendering.config import ScanSize

    asset = _tiny_job().scans[0].model_copy(update={"id": "lps_cm", "size": ScanSize(unit="cm")})
    info = renderer.load_scan(asset)
    assert info["scale_applied"] == 0.01
    assert abs(info["bbox_max_m"][2] - 0.07945) < 0.001  # ~7.945 file units tall, read as centimetres


def test_missing_texture_warns_and_uses_neutral_material(renderer, tmp_path, caplog):
    from synthgen.rendering.worker import render_sample

    job = _tiny_job(num_samples=1)
    job.scans[0] = job.scans[0].model_copy(update={"id": "lps_missing_tex", "texture": str(tmp_path / "nope.jpg")})
    job.scans = job.scans[:1]
    res = render_sample(renderer, job, 0, tmp_path / "store")
    warnings = res["record"]["render"]["scan"]["warnings"]
    assert len(warnings) == 1 and "nope.jpg" in warnings[0] and "neutral" in warnings[0]
    assert "nope.jpg" in caplog.text
    s = read_sample(tmp_path / "store", res["key"])
    assert s.mask.mean() > 0.05


def test_transparent_background_and_fov_spec(renderer, tmp_path):
    from synthgen.rendering.worker import render_sample

    job = _tiny_job(**{"num_samples": 1, "hdris.background": "transparent",
                       "camera.focal_length_mm": None, "camera.fov_deg": 40})
    job.scans = job.scans[:1]
    res = render_sample(renderer, job, 0, tmp_path)
    s = read_sample(tmp_path, res["key"])
    cam = s.record["camera"]
    assert abs(cam["fov_x_deg"] - 40) < 1e-9
    assert abs(cam["focal_length_mm"] - 18 / math.tan(math.radians(20))) < 1e-9
    bg = s.mask == 0
    assert bg.sum() > 100 and np.abs(s.rgb[bg]).max() == 0
    assert s.record["render"]["hdri"]["background"] == "transparent"


def test_framing_resamples_are_counted(renderer, tmp_path):
    from synthgen.rendering.worker import FramingError, render_sample

    job = _tiny_job(**{"num_samples": 20, "framing.coverage_min": 0.15, "framing.coverage_max": 1.0,
                       "camera.subject_fraction": {"dist": "choice", "values": [0.05, 0.9]}})
    job.scans = job.scans[:1]
    found = None
    for i in range(20):
        from synthgen.rendering.sampling import sample_params

        if sample_params(job, i, 0)["subject_fraction"] == 0.05:  # first attempt is far too small
            found = i
            break
    assert found is not None
    res = render_sample(renderer, job, found, tmp_path)
    r = res["record"]["render"]
    assert r["resamples"] >= 1 and r["attempt"] == r["resamples"]
    assert all(rej["coverage"] < 0.15 for rej in r["rejected"])
    assert res["record"]["mask"]["coverage"] >= 0.15
    never = _tiny_job(**{"framing.coverage_min": 0.99, "framing.coverage_max": 1.0, "framing.max_resamples": 1})
    never.scans = never.scans[:1]
    with pytest.raises(FramingError, match="coverage stayed outside"):
        render_sample(renderer, never, 0, tmp_path / "never")
    assert not (tmp_path / "never").exists() or not list((tmp_path / "never").glob("*.json"))


def test_auto_exposure_hits_target(head_sample):
    job, out, res = head_sample
    s = read_sample(out, res["key"])
    e = s.record["render"]["exposure"]
    assert e["mode"] == "auto" and -1.5 <= e["ev"] <= 1.5
    lum = s.rgb[s.mask > 0.5] @ np.array([0.2126, 0.7152, 0.0722])
    assert abs(np.median(lum) / (0.2 * 2 ** e["ev"]) - 1) < 0.01  # half-float storage rounding
    h = s.record["render"]["hdri"]
    assert math.isclose(h["effective_strength"], h["strength"] * e["factor"])


def test_quality_settings_reach_cycles_and_the_record(renderer, tmp_path):
    """Bounce limits, HDRI importance map, light tree and OIDN guiding passes are applied to the
    Cycles scene and recorded; Blender's defaults come back when a limit is null."""
    job = resolve_job(SMOKE, {"num_samples": 1, "output.previews": False, "render.max_bounces": 5,
                              "render.diffuse_bounces": 2, "render.glossy_bounces": 1,
                              "render.env_map_resolution": 512, "render.light_tree": False,
                              "render.denoise": True, "render.denoiser_prepass": "albedo"})
    from synthgen.rendering.worker import render_sample

    rec = render_sample(renderer, job, 0, tmp_path)["record"]
    c = bpy.context.scene.cycles
    assert (c.max_bounces, c.diffuse_bounces, c.glossy_bounces, c.transmission_bounces) == (5, 2, 1, 12)
    assert bpy.context.scene.world.cycles.sampling_method == "MANUAL"
    assert bpy.context.scene.world.cycles.sample_map_resolution == 512
    assert not c.use_light_tree and c.denoising_input_passes == "RGB_ALBEDO"
    st = rec["render"]["settings"]
    assert st["env_map_resolution"] == 512 and st["diffuse_bounces"] == 2 and st["light_tree"] is False
    renderer.configure(64, 64, 1, 0, False, 3, env_map_resolution=0)
    assert bpy.context.scene.world.cycles.sampling_method == "AUTOMATIC"
    assert (c.diffuse_bounces, c.glossy_bounces) == (4, 4)


def test_gpu_device_without_a_gpu_raises_a_clear_error():
    """``device="gpu"`` asks Blender for OptiX/CUDA devices; where there are none (no NVIDIA driver)
    the error names the setting and the backend. On a machine with a GPU, the renderer uses it."""
    import shutil as _sh

    from synthgen.rendering.blender import BlenderRenderer, GpuUnavailableError

    if _sh.which("nvidia-smi"):
        r = BlenderRenderer(threads=1, device="gpu", gpu_backend="cuda")
        assert r.gpu_devices and bpy.context.scene.cycles.device == "GPU"
        return
    with pytest.raises(GpuUnavailableError, match="render.device: gpu with gpu_backend optix"):
        BlenderRenderer(threads=1, device="gpu", gpu_backend="optix")


# ---------------------------------------------------------------- the same contract on a generated human


@pytest.fixture(scope="module")
def human_renderer():
    """A renderer of its own: BlenderRenderer() resets Blender's file, so the module's `renderer`
    is stale once another test (the GPU one) has made a new renderer."""
    from synthgen.rendering.blender import BlenderRenderer

    return BlenderRenderer(threads=2)


@pytest.fixture(scope="module")
def human_sample(human_renderer, tmp_path_factory):
    """One 128×128 render of a generated MakeHuman person (head framing), written through the contract."""
    from synthgen.rendering.worker import render_sample

    renderer = human_renderer
    job = resolve_job(SMOKE, {"render.width": 128, "render.height": 128, "render.samples": 8, "scans": [],
                              "subjects": [{"kind": "makehuman", "id": "mh", "identities": 5}],
                              "camera.yaw_deg": 0, "camera.pitch_deg": 0})
    out = tmp_path_factory.mktemp("human")
    res = render_sample(renderer, job, 0, out)
    return job, out, res


def _opaque_human_vertices(renderer):
    """World vertices of the person's opaque meshes (body, clothes, shoes, eyeballs, teeth): not the
    alpha-cut hair, eyebrow and eyelash cards, whose transparent texels show what lies behind."""
    from synthgen.rendering.blender.human import evaluated_vertices

    keep = [o for o in renderer._meshes if not any(k in o.name for k in ("hair", "eyebrow", "eyelash"))]
    return np.concatenate([evaluated_vertices(o) for o in keep])


def test_camera_record_reprojects_human_vertices(human_renderer, human_sample):
    job, out, res = human_sample
    s = read_sample(out, res["key"])
    assert s.record["subject_id"].startswith("mh_") and s.record["render"]["subject"]["kind"] == "makehuman"
    _check_reprojection(s, _opaque_human_vertices(human_renderer))


def test_mask_agrees_with_depth_on_human(human_sample):
    job, out, res = human_sample
    _check_mask_against_depth(out, res["key"])


def test_human_depth_lands_on_the_mesh(human_renderer, human_sample):
    """Back-projected depth lies on the person's metric surfaces, hair included (nearest vertex of
    any mesh), and the person's height is the sampled phenotype height."""
    from scipy.spatial import cKDTree

    job, out, res = human_sample
    s = read_sample(out, res["key"])
    K, c2w = s.K, s.camera_to_world
    v, u = np.nonzero(s.depth > 0)
    zz = s.depth[v, u]
    pw = np.stack([(u - K[0, 2]) / K[0, 0] * zz, (v - K[1, 2]) / K[1, 1] * zz, zz], -1) @ c2w[:3, :3].T + c2w[:3, 3]
    from synthgen.rendering.blender.human import evaluated_vertices

    verts = np.concatenate([evaluated_vertices(o) for o in human_renderer._meshes])
    dist, _ = cKDTree(verts).query(pw)
    assert np.median(dist) < 0.006, np.median(dist)
    sub = s.record["render"]["subject"]
    assert abs(sub["height_m"] - sub["phenotype"]["height_m"]) < 0.01 * sub["phenotype"]["height_m"]
    assert all(a["licence"] == "CC0-1.0" for a in sub["assets"])
