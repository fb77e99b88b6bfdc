"""Procedural MakeHuman people in real Blender (bpy): objects, materials, rig and posing, and the
ground-truth contract of alpha-textured cards (depth and mask follow the texture alpha)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from synthgen.camera import look_at
from synthgen.humans import HumansSpec, build_human, sample_identity
from synthgen.humans.build import MaterialDesc

from conftest import ROOT

bpy = pytest.importorskip("bpy")

HDRI = str(ROOT / "hdris" / "studio_small_03_1k.hdr")


@pytest.fixture(scope="module")
def renderer():
    from synthgen.rendering.blender import BlenderRenderer

    r = BlenderRenderer(threads=2)
    r.set_hdri(HDRI, 0.0, 1.0)
    return r


@pytest.fixture(scope="module")
def human():
    spec = HumansSpec.model_validate({"identities": 5, "phenotype": {"age_years": 30},
                                      "wardrobe": {"bald_probability": 0}})
    return build_human(sample_identity(spec, 4, 1))


def _clear(renderer):
    for o in list(bpy.data.objects):
        if o is not renderer.camera:
            bpy.data.objects.remove(o, do_unlink=True)
    bpy.data.orphans_purge(do_local_ids=True, do_linked_ids=True, do_recursive=True)


def test_build_human_objects(renderer, human):
    from synthgen.rendering.blender.human import build_human_objects, remove_human_objects

    _clear(renderer)
    t = time.perf_counter()
    out = build_human_objects(human, "hum")
    print(f"\nbuild_human_objects: {time.perf_counter() - t:.2f} s")
    arm = out["armature"]
    assert arm.type == "ARMATURE" and len(arm.data.bones) == len(human.rig.names) == 163
    assert arm.data.bones["head"].parent.name == "neck03"
    hb = arm.data.bones["head"]
    i = human.rig.index("head")
    assert np.allclose(np.array(hb.head_local), human.rig.heads[i], atol=1e-5)
    assert {o.name for o in out["meshes"]} == {f"hum_{p.name}" for p in human.parts()}
    assert set(human.proxies) >= {"hair", "eyes", "eyebrows", "eyelashes", "top", "shoes"}
    for o, part in zip(out["meshes"], human.parts()):
        assert o.type == "MESH" and o.parent is out["root"] and arm.parent is out["root"]
        assert len(o.data.vertices) == len(part.verts) and len(o.data.polygons) == len(part.face_sizes)
        assert len(o.data.materials) == len(part.materials) and all(m is not None for m in o.data.materials)
        mod = o.modifiers.get("Armature")
        assert mod is not None and mod.object is arm
        assert {g.name for g in o.vertex_groups} == set(part.vertex_groups)
        assert o.data.uv_layers.active is not None
    body = bpy.data.objects["hum_body"]
    assert body.data.materials[0].node_tree.nodes.get("Principled BSDF").inputs["Subsurface Weight"].default_value > 0
    hair = bpy.data.objects["hum_hair"].data.materials[0].node_tree
    mix = [n for n in hair.nodes if n.type == "MIX_SHADER"][0]
    assert mix.inputs["Fac"].links[0].from_socket.name == "Alpha"
    assert mix.inputs[1].links[0].from_node.type == "BSDF_TRANSPARENT"
    eyes = bpy.data.objects["hum_eyes"]
    assert [m.name.split(".")[0] for m in eyes.data.materials] == ["hum_eyeball", "hum_cornea"]
    idx = np.zeros(len(eyes.data.polygons), np.int32)
    eyes.data.polygons.foreach_get("material_index", idx)
    assert 0 < idx.mean() < 1  # both eyeball and cornea faces
    img = [n for n in eyes.data.materials[0].node_tree.nodes if n.type == "TEX_IMAGE"][0].image
    assert img.name.startswith(human.identity.iris)
    assert np.allclose(out["eye_centre_m"], human.eye_centre_m)
    remove_human_objects(out)
    assert not [o for o in bpy.data.objects if o.name.startswith("hum_")]


def _card_scene(renderer, tmp_path, with_plane: bool):
    from PIL import Image

    from synthgen.rendering.blender.human import make_material

    _clear(renderer)
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3] = (60, 40, 30)
    rgba[:, 8:, 3] = 255  # left half alpha 0, right half alpha 1
    tex = tmp_path / "card.png"
    Image.fromarray(rgba, "RGBA").save(tex)
    md = MaterialDesc(name="card", kind="hair", base_color=(0.2, 0.1, 0.05), diffuse_texture=str(tex),
                      texture_mean_luminance=0.03, alpha_cut=True, roughness=0.4)
    me = bpy.data.meshes.new("test_card")
    me.from_pydata([(-0.5, -1, 0.5), (0.5, -1, 0.5), (0.5, -1, 1.5), (-0.5, -1, 1.5)], [], [(0, 1, 2, 3)])
    uv = me.uv_layers.new(name="UVMap")
    uv.data.foreach_set("uv", [0, 0, 1, 0, 1, 1, 0, 1])
    me.materials.append(make_material(md, "test_card"))
    card = bpy.data.objects.new("test_card", me)
    renderer.scene.collection.objects.link(card)
    if with_plane:
        pm = bpy.data.meshes.new("test_plane")
        pm.from_pydata([(-5, 1, -4), (5, 1, -4), (5, 1, 6), (-5, 1, 6)], [], [(0, 1, 2, 3)])
        plane = bpy.data.objects.new("test_plane", pm)
        renderer.scene.collection.objects.link(plane)
    renderer.configure(32, 32, samples=4, adaptive_threshold=0, denoise=False, max_bounces=4)
    renderer.set_camera(look_at(np.array([0.0, -3.0, 1.0]), np.array([0.0, 0.0, 1.0])), 50.0, 36.0)


def test_alpha_card_depth_and_mask_follow_alpha(renderer, tmp_path):
    """A card 2 m from the camera, alpha 0 on its left half and 1 on its right, in front of a plane at
    4 m: the Z pass must read 4 m through the transparent half and 2 m on the opaque half; without
    the plane the mask must be 0 / 1."""
    assert renderer.scene.view_layers[0].pass_alpha_threshold == pytest.approx(0.5)
    _card_scene(renderer, tmp_path, with_plane=True)
    out = renderer.render(seed=1)
    d = out["depth"]
    # the card spans columns ~5..27 and rows ~5..27; its alpha edge is at column 16
    left, right = d[8:24, 7:14], d[8:24, 19:26]
    assert np.allclose(left, 4.0, atol=0.02), left
    assert np.allclose(right, 2.0, atol=0.02), right
    assert np.allclose(d[:, :3], 4.0, atol=0.05)  # plane beside the card
    _card_scene(renderer, tmp_path, with_plane=False)
    out = renderer.render(seed=1)
    m = out["mask"]
    assert m[8:24, 7:14].max() < 0.02 and m[8:24, 19:26].min() > 0.98
    assert np.all(out["depth"][8:24, 7:14] == 0) and np.allclose(out["depth"][8:24, 19:26], 2.0, atol=0.02)


def test_posing_the_head_moves_head_not_feet(renderer, human):
    from synthgen.rendering.blender.human import build_human_objects, evaluated_vertices

    _clear(renderer)
    out = build_human_objects(human, "pose")
    body = bpy.data.objects["pose_body"]
    hair = bpy.data.objects["pose_hair"]
    rest, rest_hair = evaluated_vertices(body), evaluated_vertices(hair)
    assert np.allclose(rest, human.body.verts, atol=1e-5)  # rest pose = the built mesh
    pb = out["armature"].pose.bones["head"]
    pb.rotation_quaternion = (math.cos(math.radians(20)), math.sin(math.radians(20)), 0.0, 0.0)  # 40 deg nod
    bpy.context.view_layer.update()
    posed, posed_hair = evaluated_vertices(body), evaluated_vertices(hair)
    moved = np.linalg.norm(posed - rest, axis=1)
    idx, w = human.body.vertex_groups["head"]
    head = idx[w > 0.9]
    feet = np.concatenate([human.body.vertex_groups[b][0][human.body.vertex_groups[b][1] > 0.5]
                           for b in ("foot.L", "foot.R")])
    assert moved[head].mean() > 0.03
    assert moved[feet].max() < 1e-6
    crown = rest_hair[:, 2] > human.eye_centre_m[2]
    assert np.linalg.norm(posed_hair - rest_hair, axis=1)[crown].mean() > 0.03  # hair follows the head
    # rotation about the head bone's head: distances to it are kept
    piv = human.rig.heads[human.rig.index("head")]
    rigid = idx[w > 0.999]
    assert len(rigid) > 100
    assert np.allclose(np.linalg.norm(posed[rigid] - piv, axis=1), np.linalg.norm(rest[rigid] - piv, axis=1), atol=1e-4)


def test_eyes_are_not_black(renderer, human):
    """Close-up of one eye: the eyeball under the clear cornea must be lit (sclera brighter than the
    surrounding skin on average, not a dark hole)."""
    from synthgen.rendering.blender.human import build_human_objects

    _clear(renderer)
    build_human_objects(human, "eye")
    ev = human.proxies["eyes"].verts
    left = ev[ev[:, 0] > 0].mean(0).astype(float)
    renderer.configure(48, 48, samples=16, adaptive_threshold=0, denoise=False, max_bounces=6)
    renderer.set_camera(look_at(left + np.array([0.0, -0.09, 0.0]), left), 50.0, 36.0)  # 6.5 cm field
    out = renderer.render(seed=1, background_visible=False)
    lum = out["rgb"] @ np.array([0.2126, 0.7152, 0.0722])
    eye = lum[22:27, 16:32]  # the eye opening, centred on the eyeball
    skin = np.median(lum)
    print(f"\neye luminance p90 {np.percentile(eye, 90):.3f}, skin median {skin:.3f}")
    assert np.percentile(eye, 90) > 1.3 * skin  # the white of the eye is lit
    # Z through the cornea is the eyeball's (the cornea is below the Z-pass alpha threshold)
    d = out["depth"][24, 24]
    assert 0.08 < d < 0.1
