"""Bring your own scans (issue 17): the scan preflight (``synthgen scans check``, and at the start of
``synthgen render``), per-scan orientation and measurement, the auto-exposure guard.

Real files only: the scans in ``scenes/`` plus files written here (an OBJ cube with a black
material, a truncated FBX, an OBJ figure standing on a plinth); real Blender, real CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from synthgen.contract import list_keys, read_sample

from conftest import ROOT, run_cli

LEE = ROOT / "scenes" / "lee_perry_smith_head"
BUST = ROOT / "scenes" / "danish_statue_bust_man_wreath" / "BustManWreath.fbx"
TINY = ["--set", "render.width=32", "--set", "render.height=32", "--set", "render.samples=1",
        "--set", "render.denoise=false", "--set", "render.adaptive_threshold=0", "--no-progress", "--workers", "1"]


def _box(x0, x1, y0, y1, z0, z1, base: int) -> tuple[list[str], list[str]]:
    """OBJ vertex and face lines of an axis-aligned box (1-based indices from ``base``)."""
    v = [f"v {x} {y} {z}" for z in (z0, z1) for y in (y0, y1) for x in (x0, x1)]
    quads = [(1, 2, 4, 3), (5, 7, 8, 6), (1, 5, 6, 2), (3, 4, 8, 7), (1, 3, 7, 5), (2, 6, 8, 4)]
    return v, ["f " + " ".join(str(base + i - 1) for i in q) for q in quads]


def write_black_cube(folder: Path) -> Path:
    """A 0.3-unit OBJ cube whose only material (MTL ``Kd 0 0 0``) is black, untextured."""
    (folder / "black.mtl").write_text("newmtl coal\nKd 0.0 0.0 0.0\nKs 0.5 0.5 0.5\nNs 50\n")
    v, f = _box(-0.15, 0.15, -0.15, 0.15, 0.0, 0.3, 1)
    p = folder / "black_cube.obj"
    p.write_text("mtllib black.mtl\no Cube\n" + "\n".join(v) + "\nusemtl coal\n" + "\n".join(f) + "\n")
    return p


def write_truncated_fbx(folder: Path) -> Path:
    """The statue bust's binary FBX cut to 300 kB: its header is valid, its node tree is not."""
    p = folder / "truncated.fbx"
    p.write_bytes(BUST.read_bytes()[:300_000])
    return p


def _config(folder: Path, scans: list[dict], **extra) -> Path:
    doc = {"name": "byo", "seed": 1, "num_samples": 2, "scans": scans,
           "hdris": {"paths": [str(ROOT / "hdris" / "*.hdr")]},
           "camera": {"focal_length_mm": 50, "subject_fraction": 0.5, "target": "head"},
           "framing": {"coverage_min": 0.0, "coverage_max": 1.0, "max_resamples": 0}, **extra}
    p = folder / "job.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


LEE_SCAN = {"id": "lee", "path": str(LEE / "LeePerrySmith.glb"), "texture": str(LEE / "Map-COL.jpg"),
            "size": {"height_m": 0.36}}


@pytest.fixture()
def cache(tmp_path) -> dict[str, str]:
    return {"SYNTHGEN_CACHE_DIR": str(tmp_path / "cache")}


def test_preflight_reports_black_material_size_and_rig(tmp_path, cache):
    """``synthgen scans check``: a black untextured material is reported, sizes and units are
    given, a rig's bones are matched to the pose joints; a second check is served from the cache."""
    cube = write_black_cube(tmp_path)
    cfg = _config(tmp_path, [
        {"id": "cube", "path": str(cube), "size": {"unit": "m"}},
        {"id": "rocketbox", "path": str(ROOT / "scenes" / "rocketbox_female_adult_01" / "Female_Adult_01.fbx"),
         "size": {"height_m": 1.68}}])
    res = run_cli("scans", "check", str(cfg), "--json", str(tmp_path / "r.json"), "--sheets", str(tmp_path / "sh"),
                  env=cache)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "near black" in res.stdout and "'coal'" in res.stdout, res.stdout
    for sid in ("cube", "rocketbox"):   # contact sheets: rows front, side, head; columns RGB | depth | mask
        sheet = np.asarray(Image.open(tmp_path / "sh" / f"{sid}.png"))
        assert sheet.shape == (480, 480, 3)
        assert all(sheet[160 * k:160 * (k + 1), 320:, 0].mean() > 10 for k in range(3)), sid   # subject in each view
    rep = json.loads((tmp_path / "r.json").read_text())
    cube_e, rb = rep["scans"]
    assert not cube_e["cached"] and cube_e["errors"] == []
    mat = cube_e["report"]["materials"][0]
    assert mat["near"] == "black" and not mat["textured"]
    assert cube_e["report"]["raw"]["extent"][2] == pytest.approx(0.3, abs=1e-4)
    assert cube_e["report"]["extent_m"][2] == pytest.approx(0.3, abs=1e-4)   # unit: m
    assert "OBJ has no unit" in cube_e["report"]["raw"]["units"]
    assert rb["report"]["extent_m"][2] == pytest.approx(1.68, abs=1e-3)
    assert rb["report"]["rigs"][0]["bones"] > 50
    joints = rb["report"]["pose_joints"]
    assert joints["head"] == "Bip01 Head" and joints["neck"] is None   # Biped: no separate neck bone
    assert any("missing texture" in w for w in rb["warnings"])          # its .tga files are not shipped
    again = run_cli("scans", "check", str(cfg), "--json", str(tmp_path / "r2.json"), env=cache)
    assert again.returncode == 0
    rep2 = json.loads((tmp_path / "r2.json").read_text())
    assert all(e["cached"] for e in rep2["scans"]) and rep2["scans"][0]["seconds"] < 1.0


def test_texture_typo_is_exit_2_before_anything(tmp_path, cache):
    cfg = _config(tmp_path, [dict(LEE_SCAN, texture=str(LEE / "Map-COLL.jpg"))])
    out = tmp_path / "store"
    for args in (["render", "--config", str(cfg), "--out", str(out), *TINY], ["scans", "check", str(cfg)]):
        res = run_cli(*args, env=cache)
        assert res.returncode == 2, res.stderr
        assert "scans[0].texture" in res.stderr and "Map-COLL.jpg" in res.stderr and "does not exist" in res.stderr
        assert "Traceback" not in res.stderr
    assert not out.exists()


def test_bad_scans_stop_the_job_or_are_quarantined(tmp_path, cache):
    """A truncated FBX and a scan in the wrong unit stop ``synthgen render`` with exit 2 and the real
    causes before Ray starts or ``_meta/`` is written; with ``--skip-bad-scans`` they are quarantined
    (reasons in ``_meta/scans.json`` and on stderr) and the other scans render; the black cube's
    warning reaches the summary and ``_meta/scans.json``."""
    bad = write_truncated_fbx(tmp_path)
    cube = write_black_cube(tmp_path)
    cfg = _config(tmp_path, [
        {"id": "broken", "path": str(bad), "size": {"height_m": 0.6}},
        {"id": "tiny", "path": str(LEE / "LeePerrySmith.glb"), "size": {"unit": "mm"}},   # ~8 mm tall
        LEE_SCAN,
        {"id": "cube", "path": str(cube), "size": {"unit": "m"}}], render={"exposure_warn_factor": 3})
    out = tmp_path / "store"
    res = run_cli("render", "--config", str(cfg), "--out", str(out), *TINY, env=cache)
    assert res.returncode == 2, res.stderr
    assert "scan broken" in res.stderr and "failed to read complete nested block" in res.stderr, res.stderr
    assert "scan tiny" in res.stderr and "measured height 0.007945 m" in res.stderr
    assert "--skip-bad-scans" in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()   # nothing written: no _meta/, no store

    dry = run_cli("render", "--config", str(cfg), "--out", str(out), "--dry-run", env=cache)
    assert dry.returncode == 2 and "scan broken" in dry.stderr

    res = run_cli("render", "--config", str(cfg), "--out", str(out), "--skip-bad-scans", "--num-samples", "3",
                  *TINY, env=cache)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "scan broken quarantined by --skip-bad-scans (scan_import_failed)" in res.stderr
    assert "scan tiny quarantined by --skip-bad-scans (implausible_size)" in res.stderr
    assert "scan cube: material 'coal'" in res.stderr and "near black" in res.stderr
    meta = json.loads((out / "_meta" / "scans.json").read_text())
    assert {q["id"]: q["reason"] for q in meta["quarantined"]} == {"broken": "scan_import_failed",
                                                                    "tiny": "implausible_size"}
    assert any("near black" in w for w in meta["warnings"])
    run = json.loads((out / "_meta" / "run.json").read_text())
    assert [q["id"] for q in run["scans_quarantined"]] == ["broken", "tiny"] and run["scan_warnings"]
    keys = list_keys(out)
    assert len(keys) == 3
    recs = {k: read_sample(out, k).record for k in keys}
    assert {r["subject_id"] for r in recs.values()} == {"lee", "cube"}

    # auto-exposure guard: a factor outside [1/3, 3] (or clamped, or a black subject) is a warning ...
    warned = set()
    for k, r in recs.items():
        e = r["render"]["exposure"]
        expect = e["clamped"] or not 1 / 3 <= e["factor"] <= 3 or e["subject_median_luminance_before"] <= 1e-8
        assert bool(e.get("warning")) == expect, e
        if expect:
            warned.add(k)
    assert any(recs[k]["subject_id"] == "cube" for k in warned), [r["render"]["exposure"] for r in recs.values()]
    # ... and synthgen qa lists those samples
    qa = run_cli("qa", str(out), "--out", str(tmp_path / "qa"), "--no-progress", env=cache)
    assert qa.returncode in (0, 1), qa.stderr
    summary = json.loads((tmp_path / "qa" / "report.json").read_text())["summary"]
    assert summary["exposure_warning_count"] == len(warned)
    assert {w["key"] for w in summary["exposure_warnings"]} == warned
    assert "auto-exposure warnings" in qa.stdout
    assert "auto-exposure warnings" in (tmp_path / "qa" / "report.html").read_text()


def _obj_from_blender_frame(boxes: list[tuple[str | None, tuple]], path: Path) -> Path:
    """Write boxes given in Blender's imported frame (Z up) as an OBJ file (Y up: the OBJ importer
    maps OBJ (x, y, z) to Blender (x, -z, y)); a name starts a new object, None continues the last."""
    lines, n = [], 0
    for name, (x0, x1, y0, y1, z0, z1) in boxes:
        if name:
            lines.append(f"o {name}")
        v, f = _box(x0, x1, y0, y1, z0, z1, n + 1)
        # Blender (X, Y, Z) -> OBJ (X, Z, -Y)
        lines += [" ".join(["v", a, c, str(-float(b))]) for a, b, c in (ln.split()[1:] for ln in v)] + f
        n += 8
    path.write_text("\n".join(lines) + "\n")
    return path


def write_lying_figure(folder: Path) -> Path:
    """A 1-unit 'figure' lying along +X (its up) and facing +Y (a three-box nose near its top end),
    in the imported frame: a file exported with another up axis."""
    nose = [(None, (0.8, 0.9, 0.1, 0.3, -0.03 + k * 0.02, -0.01 + k * 0.02)) for k in range(3)]
    return _obj_from_blender_frame([("Figure", (0.0, 1.0, -0.1, 0.1, -0.1, 0.1)), *nose], folder / "lying.obj")


def write_statue_on_plinth(folder: Path, one_object: bool = False) -> Path:
    """A 1.0-unit 'body' standing on a separate 0.08-unit plinth (two objects, or one object of two
    disconnected parts)."""
    return _obj_from_blender_frame(
        [("Body", (-0.15, 0.15, -0.1, 0.1, 0.08, 1.08)),
         (None if one_object else "Plinth", (-0.25, 0.25, -0.25, 0.25, 0.0, 0.08))],
        folder / f"statue{'_one' if one_object else ''}.obj")


def test_orientation_and_measured_size(tmp_path, cache):
    """``up_axis``/``forward_axis`` turn a lying figure upright, facing -Y; ``size.measure`` scales the
    body, not the plinth (named objects or the largest connected part, also inside one object);
    the render records what was measured."""
    lying, statue = write_lying_figure(tmp_path), write_statue_on_plinth(tmp_path)
    one = write_statue_on_plinth(tmp_path, one_object=True)
    scans = [{"id": "lying_default", "path": str(lying), "size": {"unit": "m"}},
             {"id": "upright", "path": str(lying), "size": {"unit": "m"}, "up_axis": "+X", "forward_axis": "+Y"},
             {"id": "whole", "path": str(statue), "size": {"height_m": 1.65}},
             {"id": "named", "path": str(statue), "size": {"height_m": 1.65, "measure": ["bod*"]}},
             {"id": "largest", "path": str(statue), "size": {"height_m": 1.65, "measure": "largest_part"}},
             {"id": "largest_one", "path": str(one), "size": {"height_m": 1.65, "measure": "largest_part"}}]
    cfg = _config(tmp_path, scans)
    res = run_cli("scans", "check", str(cfg), "--json", str(tmp_path / "r.json"), env=cache)
    assert res.returncode == 0, res.stdout + res.stderr
    rep = {e["id"]: e["report"] for e in json.loads((tmp_path / "r.json").read_text())["scans"]}
    assert rep["lying_default"]["extent_m"][2] == pytest.approx(0.2, abs=1e-4)      # as imported: lying
    up = rep["upright"]
    assert up["extent_m"] == pytest.approx([0.2, 0.4, 1.0], abs=1e-4)                # standing, nose in y
    assert up["centroid_m"][1] < -0.01                                                # the nose points to -Y
    assert up["raw"]["extent"][0] == pytest.approx(1.0, abs=1e-4)                    # raw: as imported
    assert rep["whole"]["measured"]["height_m"] == pytest.approx(1.65, abs=1e-4)     # plinth included
    for k in ("named", "largest", "largest_one"):
        m = rep[k]["measured"]
        assert m["height_m"] == pytest.approx(1.65, abs=1e-4), k                     # the body is 1.65 m
        assert m["whole_height_m"] == pytest.approx(1.65 * 1.08, abs=1e-3), k
        assert rep[k]["bbox_min_m"][2] == pytest.approx(0.0, abs=1e-6)                # body on z = 0
    assert rep["named"]["measured"]["objects"] == ["Body"] and rep["largest"]["measured"]["objects"] == ["Body"]
    assert rep["largest_one"]["measured"]["parts"] == 2
    assert "measured largest_part" in res.stdout

    out = tmp_path / "store"
    cfg = _config(tmp_path, [scans[1], scans[4]], num_samples=4,
                  camera={"focal_length_mm": 50, "distance_m": 3.0, "target": "center"})
    res = run_cli("render", "--config", str(cfg), "--out", str(out), *TINY, env=cache)
    assert res.returncode == 0, res.stderr[-3000:]
    seen = set()
    for k in list_keys(out):
        scan = read_sample(out, k).record["render"]["scan"]
        seen.add(scan["id"])
        if scan["id"] == "largest":
            assert scan["measured"]["rule"] == "largest_part" and scan["measured"]["objects"] == ["Body"]
            assert scan["measured"]["height_m"] == pytest.approx(1.65, abs=1e-4)
        else:
            assert scan["orientation"] == {"up_axis": "+X", "forward_axis": "+Y"}
    assert seen == {"upright", "largest"}, seen


def test_manifest_tags_drive_weights_and_reach_records_qa_and_card(tmp_path, cache):
    """``scans: {manifest: library.csv, balance, tag_weights}``: the rows' tags set the sampling
    weights (checked on a 3000-sample plan), and the tags, licences and attributions reach every
    record, the QA report and the store's dataset card."""
    write_black_cube(tmp_path)
    write_statue_on_plinth(tmp_path)
    (tmp_path / "library.csv").write_text(
        "path,id,height_m,unit,measure,texture,base_color,licence,attribution,tag_sex,tag_age_band\n"
        f"{LEE / 'LeePerrySmith.glb'},lee,0.36,,,{LEE / 'Map-COL.jpg'},,CC-BY-3.0,Lee Perry-Smith,male,adult\n"
        "black_cube.obj,cube,,m,,,0.5 0.45 0.4,CC0-1.0,a test cube,female,adult\n"
        "statue.obj,statue,1.65,,largest_part,,0.6 0.5 0.4,CC0-1.0,a test statue,female,child\n")
    cfg = _config(tmp_path, {"manifest": "library.csv", "balance": ["sex"], "tag_weights": {"age_band": {"child": 2}}})
    res = run_cli("render", "--config", str(cfg), "--dry-run", "--num-samples", "3000", env=cache)
    assert res.returncode == 0, res.stderr[-3000:]
    doc = yaml.safe_load(res.stdout)
    # balance by sex: lee 1, each female 1/2; age_band child x2: statue 1
    assert [(s["id"], s["weight"]) for s in doc["config"]["scans"]] == [("lee", 1.0), ("cube", 0.5), ("statue", 1.0)]
    assert doc["config"]["scans"][2]["tags"] == {"sex": "female", "age_band": "child"}
    n = doc["plan"]["samples_per_scan"]
    assert abs(n["lee"] - 1200) < 120 and abs(n["cube"] - 600) < 90 and abs(n["statue"] - 1200) < 120, n

    bad = tmp_path / "bad.csv"
    bad.write_text("path,colour\nx.obj,red\n")
    res = run_cli("render", "--config", str(_config(tmp_path, {"manifest": "bad.csv"})), "--dry-run", env=cache)
    assert res.returncode == 2 and "bad.csv: unknown column(s) ['colour']" in res.stderr, res.stderr

    cfg = _config(tmp_path, {"manifest": "library.csv"})
    out = tmp_path / "store"
    res = run_cli("render", "--config", str(cfg), "--out", str(out), "--num-samples", "3", *TINY, env=cache)
    assert res.returncode == 0, res.stderr[-3000:]
    recs = [read_sample(out, k).record for k in list_keys(out)]
    tags_seen = {}
    for r in recs:
        scan = r["render"]["scan"]
        assert scan["tags"]["sex"] in ("male", "female") and scan["licence"] in ("CC-BY-3.0", "CC0-1.0")
        tags_seen[scan["tags"]["sex"]] = tags_seen.get(scan["tags"]["sex"], 0) + 1
    qa = run_cli("qa", str(out), "--out", str(tmp_path / "qa"), "--no-progress", "--no-html", env=cache)
    assert qa.returncode in (0, 1), qa.stderr
    summary = json.loads((tmp_path / "qa" / "report.json").read_text())["summary"]
    assert summary["scan_tags"]["sex"] == tags_seen and "scan tags (samples): " in qa.stdout
    card = (out / "README.md").read_text()
    for r in recs:
        s = r["render"]["scan"]
        assert f"`{s['id']}` (age_band={s['tags']['age_band']}, sex={s['tags']['sex']})" in card
        assert s["attribution"] in card
