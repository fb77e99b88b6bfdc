"""Every shipped config and every subject in ``scenes/`` renders through the CLI on embedded Ray.

Render actors run Blender on their process's main thread (importers and ``mode_set`` fail their
``poll()`` anywhere else); these tests run the path users run — ``synthgen render`` in a fresh
process, Ray workers — at a tiny size through ``--set`` overrides, and require that no sample is
quarantined. Rigged scans (FBX and glTF with armatures, posed) and OBJ/PLY files are the ones that
failed when Blender ran on Ray's pool threads.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from synthgen.contract import list_keys, read_sample, verify_sample

from conftest import ROOT, run_cli

TINY = ["--set", "render.width=40", "--set", "render.height=40", "--set", "render.samples=2",
        "--set", "render.denoise=false", "--set", "render.adaptive_threshold=0", "--no-progress"]

CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
NOT_RENDER_CONFIGS: dict[str, str] = {}
"""Shipped YAML files under configs/ that are not render jobs, with the reason (none today;
``configs/cluster/`` holds deployment files, not jobs)."""


def _check_store(out: Path, res, n: int) -> list[dict]:
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-4000:])
    assert not (out / "_meta" / "quarantine.json").exists(), (out / "_meta" / "quarantine.json").read_text()
    keys = list_keys(out)
    assert len(keys) == n, keys
    recs = []
    for key in keys:
        assert verify_sample(out, key) == []
        s = read_sample(out, key)
        valid = s.depth[s.depth > 0]
        assert valid.size and np.ptp(valid) > 0.005, f"{key}: depth is one value"
        assert s.mask.max() > 0.5, f"{key}: empty mask"
        recs.append(s.record)
    return recs


def test_shipped_configs_are_all_covered():
    assert CONFIGS, "no config under configs/"
    assert "portrait.yaml" in CONFIGS and "variation.yaml" in CONFIGS


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_config_renders_through_cli(name: str, tmp_path: Path):
    """Each config under configs/ renders 3 samples through the CLI with nothing quarantined."""
    if name in NOT_RENDER_CONFIGS:
        pytest.skip(NOT_RENDER_CONFIGS[name])
    out = tmp_path / "store"
    res = run_cli("render", "--config", str(ROOT / "configs" / name), "--out", str(out),
                  "--num-samples", "3", "--workers", "1", *TINY)
    recs = _check_store(out, res, 3)
    if name == "variation.yaml":  # pose on rigs is what needs the main thread
        assert any(r["render"].get("pose", {}).get("joints") for r in recs), [r["subject_id"] for r in recs]


def _write_obj_ply(folder: Path) -> tuple[Path, Path]:
    """A closed UV-sphere 'head' as OBJ and PLY (real files written here, ASCII formats per their specs)."""
    n_lat, n_lon = 12, 16
    verts = [(0.0, 0.0, 1.0)]
    for i in range(1, n_lat):
        th = np.pi * i / n_lat
        for j in range(n_lon):
            ph = 2 * np.pi * j / n_lon
            verts.append((0.8 * np.sin(th) * np.cos(ph), 0.9 * np.sin(th) * np.sin(ph), np.cos(th)))
    verts.append((0.0, 0.0, -1.0))
    faces = [(0, 1 + (j + 1) % n_lon, 1 + j) for j in range(n_lon)]
    for i in range(n_lat - 2):
        a, b = 1 + i * n_lon, 1 + (i + 1) * n_lon
        for j in range(n_lon):
            j2 = (j + 1) % n_lon
            faces.append((a + j, a + j2, b + j2, b + j))
    last = len(verts) - 1
    faces += [(last, 1 + (n_lat - 2) * n_lon + j, 1 + (n_lat - 2) * n_lon + (j + 1) % n_lon) for j in range(n_lon)]
    obj = folder / "sphere.obj"
    obj.write_text("".join(f"v {x:.6f} {z:.6f} {-y:.6f}\n" for x, y, z in verts)  # OBJ: +Y up
                   + "".join("f " + " ".join(str(i + 1) for i in f) + "\n" for f in faces))
    ply = folder / "sphere.ply"
    ply.write_text("ply\nformat ascii 1.0\n"
                   f"element vertex {len(verts)}\nproperty float x\nproperty float y\nproperty float z\n"
                   f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
                   + "".join(f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in verts)
                   + "".join(f"{len(f)} " + " ".join(map(str, f)) + "\n" for f in faces))
    return obj, ply


@pytest.mark.slow
def test_every_scene_subject_and_obj_ply_render_through_cli(tmp_path: Path):
    """One job holding every subject in scenes/ (rigged FBX and glTF posed) plus an OBJ and a PLY scan:
    one sample of each renders through the CLI on Ray, with nothing quarantined."""
    from synthgen.rendering.config import resolve_job
    from synthgen.rendering.sampling import scan_for

    obj, ply = _write_obj_ply(tmp_path)
    scenes = ROOT / "scenes"
    cfg = tmp_path / "all.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        name: allscenes
        seed: 1
        num_samples: 60
        scans:
          - {{id: lee_perry_smith, path: {scenes}/lee_perry_smith_head/LeePerrySmith.glb, size: {{height_m: 0.36}}}}
          - {{id: bust, path: {scenes}/danish_statue_bust_man_wreath/BustManWreath.fbx, base_color: [0.5, 0.45, 0.39],
              size: {{height_m: 0.62}}, head_height_m: 0.25}}
          - {{id: cesium_man, path: {scenes}/cesium_man/CesiumMan.glb, size: {{height_m: 1.75}}, head_height_m: 0.3,
              exclude_objects: [Icosphere]}}
          - {{id: rocketbox, path: {scenes}/rocketbox_female_adult_01/Female_Adult_01.fbx, size: {{height_m: 1.68}}}}
          - {{id: obj_sphere, path: {obj}, size: {{height_m: 0.25}}}}
          - {{id: ply_sphere, path: {ply}, size: {{height_m: 0.25}}}}
        hdris: {{paths: ["{ROOT}/hdris/*.hdr"]}}
        camera: {{sensor_width_mm: 36, focal_length_mm: 50, subject_fraction: 0.5, yaw_deg: 0, pitch_deg: 0, target: head}}
        pose: {{enabled: true, subject_yaw_deg: {{dist: uniform, low: -20, high: 20}}}}
        render: {{width: 40, height: 40, samples: 2, denoise: false, adaptive_threshold: 0}}
        """))
    assert {p.name for p in scenes.iterdir() if p.is_dir()} == {
        "lee_perry_smith_head", "danish_statue_bust_man_wreath", "cesium_man", "rocketbox_female_adult_01"}, \
        "a new subject in scenes/: add it to this test"
    job = resolve_job(cfg)
    first: dict[str, int] = {}
    for i in range(job.config.num_samples):
        first.setdefault(scan_for(job, i), i)
    assert len(first) == 6, first
    indices = ",".join(str(i) for i in sorted(first.values()))
    out = tmp_path / "store"
    res = run_cli("render", "--config", str(cfg), "--out", str(out), "--indices", indices, "--no-progress")
    recs = _check_store(out, res, 6)
    assert {r["subject_id"] for r in recs} == set(first)
    posed = {r["subject_id"] for r in recs if r["render"].get("pose", {}).get("joints")}
    assert {"cesium_man", "rocketbox"} <= posed, posed
    run = json.loads((out / "_meta" / "run.json").read_text())
    assert run


def test_import_error_carries_the_real_cause(tmp_path: Path):
    """A scan Blender cannot import is quarantined with the importer's own message, not only the
    ``Location: .../bpy/ops.py`` line."""
    bad = tmp_path / "broken.gltf"  # passes the header sniff, but its JSON is cut off
    bad.write_text('{"asset": {"version": "2.0"}, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0')
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        name: bad
        num_samples: 1
        scans: [{{id: broken, path: {bad}, size: {{height_m: 0.3}}}}]
        hdris: {{paths: ["{ROOT}/hdris/*.hdr"]}}
        camera: {{sensor_width_mm: 36, focal_length_mm: 50, distance_m: 1.0}}
        render: {{width: 32, height: 32, samples: 1, denoise: false}}
        """))
    out = tmp_path / "store"
    # the worker-side path: without the scan preflight (which refuses the scan up front, exit 2;
    # tests/test_scans.py), the import error reaches the workers and quarantines the sample
    res = run_cli("render", "--config", str(cfg), "--out", str(out), "--workers", "1", "--no-progress",
                  "--no-scan-check")
    assert res.returncode == 1, res.stderr[-3000:]
    q = json.loads((out / "_meta" / "quarantine.json").read_text())
    err = q["quarantined"][0]["error"]
    assert "scan_import_failed" in json.dumps(q)
    assert "broken.gltf" in err and "Location:" not in err and len(err) > 80, err
