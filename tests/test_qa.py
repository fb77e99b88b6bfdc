"""Tests for ``synthgen qa``: reports on a rendered store, a real (TUM RGB-D) store and shard folders,
planted defects failing exactly the right gates, gates YAML, HTML safety and a real headless browser.

Stores are real sample stores (real OpenEXR files through ``synthgen.contract.write_sample``; one
rendered with Blender through ``synthgen render``), shards are real tars read back by the QA reader.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthgen.contract import member_path, sha256_file, write_sample
from synthgen.exr import depth_channel, write_exr

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "tum_rgbd_fr1_xyz_qa"
SYNTHGEN = [sys.executable, "-m", "synthgen.cli"]
ALL_GATES = {"inputs_readable", "records_valid", "members_complete", "depth_finite", "depth_has_valid_pixels", "depth_in_range",
             "mask_not_empty", "mask_not_full", "exposure_not_clipped", "no_exact_duplicates", "keys_unique",
             "keys_disjoint_across_splits", "subjects_disjoint_across_splits", "camera_consistent",
             "mask_without_person"}


# ------------------------------------------------------------------------------------------------
# builders

def run_qa(*args, check_rc=None):
    """Run the real CLI in a subprocess; returns (rc, stdout, stderr)."""
    p = subprocess.run(SYNTHGEN + ["qa", "--no-progress", *map(str, args)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    if check_rc is not None:
        assert p.returncode == check_rc, f"rc={p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p.returncode, p.stdout, p.stderr


def failing_gates(report_dir: Path) -> set[str]:
    doc = json.loads((report_dir / "report.json").read_text())
    return {r["expectation_config"]["meta"]["gate"] for r in doc["results"] if not r["success"]}


def gate_result(doc, name):
    return next(r for r in doc["results"] if r["expectation_config"]["meta"]["gate"] == name)


def synth_arrays(seed: int, w: int = 48, h: int = 40):
    """A synthetic 'head': ellipse at 0.6-0.7 m in front of invalid background, shaded colour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = w / 2 + rng.uniform(-3, 3), h / 2 + rng.uniform(-3, 3)
    r = ((xx - cx) / (0.3 * w)) ** 2 + ((yy - cy) / (0.4 * h)) ** 2
    mask = (r <= 1).astype(np.float32)
    depth = np.where(mask > 0, 0.6 + 0.1 * r, 0.0).astype(np.float32)
    base = rng.uniform(0.15, 0.5, 3).astype(np.float32)
    rgb = (base[None, None] * (1.0 - 0.4 * r[..., None].clip(0, 1)) + 0.02 * rng.random((h, w, 3))).astype(np.float32)
    rgb = np.where(mask[..., None] > 0, rgb, 0.05 + 0.05 * rng.random((h, w, 3))).astype(np.float32)
    return rgb, depth, mask


def synth_record(w, h, subject, seed=0, **over):
    f_mm, sw = 50.0, 36.0
    fx = f_mm / sw * w
    rec = {
        "source": "synthetic", "subject_id": subject,
        "camera": {"K": [[fx, 0, (w - 1) / 2], [0, fx, (h - 1) / 2], [0, 0, 1]],
                   "camera_to_world": np.eye(4).tolist(), "focal_length_mm": f_mm, "sensor_width_mm": sw,
                   "sensor_fit": "horizontal",
                   "fov_x_deg": math.degrees(2 * math.atan(w / (2 * fx))),
                   "fov_y_deg": math.degrees(2 * math.atan(h / (2 * fx)))},
        "depth": {"kind": "planar_z", "units": "metres", "metric": True, "invalid_value": 0.0},
        "mask": {"kind": "subject_coverage"},
        "render": {"params": {"yaw_deg": -20 + 7 * seed % 40, "pitch_deg": 3.0, "roll_deg": 0.0,
                              "hdri_id": f"hdri_{seed % 3}", "scan_id": subject, "focal_length_mm": f_mm},
                   "camera": {"distance_m": 0.65}, "scan": {"id": subject}, "hdri": {"id": f"hdri_{seed % 3}"}},
        "synthgen_version": "0.1.0",
    }
    rec.update(over)
    return rec


def write_synth(store, key, seed, subject, rgb=None, depth=None, mask=None, **over):
    a = synth_arrays(seed)
    rgb = a[0] if rgb is None else rgb
    depth = a[1] if depth is None else depth
    mask = a[2] if mask is None else mask
    h, w = depth.shape
    return write_sample(store, key, rgb, depth, mask, synth_record(w, h, subject, seed, **over))


def replace_member(store, key, member, channels):
    """Overwrite an EXR member (e.g. with NaN depth) and update the record's checksum, so only the
    planted defect differs from a valid sample."""
    write_exr(member_path(store, key, member), channels)
    jp = member_path(store, key, "json")
    rec = json.loads(jp.read_text())
    p = member_path(store, key, member)
    rec["files"][member].update(bytes=p.stat().st_size, sha256=sha256_file(p))
    jp.write_text(json.dumps(rec))


def build_real_store(store: Path) -> Path:
    """Real TUM RGB-D frame (Kinect v1): the full frame and three crops, depth = PNG / 5000 m,
    subject mask = valid depth nearer than 1.3 m (the objects on the desk)."""
    rgb8 = np.asarray(Image.open(FIX / "1305031102.175304.png").convert("RGB")).astype(np.float32) / 255
    rgb = np.where(rgb8 <= 0.04045, rgb8 / 12.92, ((rgb8 + 0.055) / 1.055) ** 2.4).astype(np.float32)
    depth = np.asarray(Image.open(FIX / "1305031102.160407.png")).astype(np.float32) / 5000.0
    mask = ((depth > 0) & (depth < 1.3)).astype(np.float32)
    fx, fy, cx, cy = 517.3, 516.5, 318.6, 255.3
    crops = {"full": (0, 0, 640, 480), "c0": (0, 0, 320, 240), "c1": (320, 0, 320, 240), "c2": (160, 240, 320, 240)}
    for name, (x0, y0, w, h) in crops.items():
        K = [[fx, 0, cx - x0], [0, fy, cy - y0], [0, 0, 1]]
        rec = {"source": "real", "subject_id": "tum_fr1_xyz", "split": "train",
               "camera": {"K": K, "camera_to_world": None,
                          "fov_x_deg": math.degrees(2 * math.atan(w / (2 * fx))),
                          "fov_y_deg": math.degrees(2 * math.atan(h / (2 * fy)))},
               "depth": {"kind": "planar_z", "units": "metres", "metric": True, "invalid_value": 0.0},
               "mask": {"kind": "subject_coverage", "source": "depth_threshold_1.3m"},
               "capture": {"sensor": "kinect_v1", "dataset": "tum_rgbd_fr1_xyz",
                           "rgb_file": "rgb/1305031102.175304.png", "depth_file": "depth/1305031102.160407.png",
                           "depth_scale": "value / 5000 = metres"},
               "synthgen_version": "0.1.0"}
        sl = np.s_[y0:y0 + h, x0:x0 + w]
        write_sample(store, f"tum_fr1_xyz_{name}", rgb[sl], depth[sl], mask[sl], rec)
    qdir = store / "_meta"
    qdir.mkdir(exist_ok=True)
    (qdir / "quarantine.json").write_text(json.dumps(
        {"quarantined": [{"frame": "rgb/1305031102.211214.png", "reasons": ["no depth frame within 20 ms"]}]}))
    return store


def pack_shards(out: Path, samples: list[tuple[str, Path, str]]) -> Path:
    """Write WebDataset tars ``{split}-000000.tar`` from (split, store, key) triples + manifest.json."""
    out.mkdir(parents=True, exist_ok=True)
    by_split: dict[str, list] = {}
    for split, store, key in samples:
        by_split.setdefault(split, []).append((store, key))
    shards = []
    for split, items in by_split.items():
        name = f"{split}-{0:06d}.tar"
        with tarfile.open(out / name, "w", format=tarfile.USTAR_FORMAT) as tf:
            for store, key in items:
                for m in ("depth.exr", "json", "mask.exr", "rgb.exr"):
                    tf.add(member_path(store, key, m), arcname=f"{key}.{m}")
        shards.append({"file": name, "split": split, "samples": len(items),
                       "bytes": (out / name).stat().st_size, "sha256": sha256_file(out / name)})
    (out / "manifest.json").write_text(json.dumps({"shards": shards}))
    return out


# ------------------------------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def rendered_store(tmp_path_factory):
    """A tiny real render (2 samples, 64x64) through ``synthgen render``; falls back to
    write_sample-built synthetic samples only when the render command is not available."""
    out = tmp_path_factory.mktemp("qa") / "rendered"
    has_render = subprocess.run(SYNTHGEN + ["render", "--help"], cwd=ROOT, capture_output=True).returncode == 0
    if has_render:
        p = subprocess.run(SYNTHGEN + ["render", "--config", "configs/smoke.yaml", "--out", str(out),
                                       "--num-samples", "2", "--no-progress"],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stdout + p.stderr
    else:
        for i in range(2):
            write_synth(out, f"synth_{i:06d}", i, f"scan_{i}")
    return out


@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    return build_real_store(tmp_path_factory.mktemp("qa") / "real")


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory):
    """Eight clean write_sample-built synthetic samples, four subjects (all in split 'train')."""
    out = tmp_path_factory.mktemp("qa") / "synth"
    for i in range(8):
        write_synth(out, f"synth_{i:06d}", i, f"scan_{i % 4}")
    return out


@pytest.fixture(scope="module")
def mixed_report(tmp_path_factory, synth_store, real_store):
    out = tmp_path_factory.mktemp("qa") / "report_mixed"
    rc, so, se = run_qa(f"train={synth_store}", real_store, "--out", out, "--sample", 6)
    return out, rc, so, se


# ------------------------------------------------------------------------------------------------
# reports on real stores

def test_report_on_rendered_store(rendered_store, tmp_path):
    out = tmp_path / "rep"
    rc, so, se = run_qa(rendered_store, "--out", out)
    doc = json.loads((out / "report.json").read_text())
    assert rc == (0 if doc["success"] else 1), so + se
    assert doc["statistics"]["samples"] == 2 and doc["statistics"]["samples_decoded"] == 2
    assert doc["summary"]["by_source"] == {"synthetic": 2}
    assert {r["expectation_config"]["meta"]["gate"] for r in doc["results"]} == ALL_GATES
    for g in ("records_valid", "members_complete", "depth_finite", "depth_has_valid_pixels", "depth_in_range",
              "mask_not_empty", "mask_not_full", "no_exact_duplicates", "keys_unique",
              "keys_disjoint_across_splits", "subjects_disjoint_across_splits", "camera_consistent"):
        assert gate_result(doc, g)["success"], (g, gate_result(doc, g)["result"])
    d = doc["distributions"]
    for m in ("fov_x_deg", "yaw_deg", "pitch_deg", "camera_distance_m", "mask_fraction", "depth_max_m",
              "exposure_ev", "brightness", "invalid_fraction"):
        assert d[m]["by_source"]["synthetic"]["count"] == 2, m
    assert sum(d["pixel_depth_m"]["by_source"]["synthetic"]["counts"]) > 0
    assert doc["summary"]["hdris"]["distinct"] >= 1 and doc["summary"]["scans"]["distinct"] >= 1
    html = (out / "report.html").read_text()
    assert html.count('class="tile-img"') >= 2
    assert ("PASS" if doc["success"] else "FAIL") in so.splitlines()[-1]


def test_report_on_real_store_passes(real_store, tmp_path):
    out = tmp_path / "rep"
    rc, so, se = run_qa(real_store, "--out", out, check_rc=0)
    doc = json.loads((out / "report.json").read_text())
    assert doc["success"] is True
    assert doc["summary"]["by_source"] == {"real": 4}
    assert doc["summary"]["by_split_source"] == {"train": {"real": 4}}
    assert doc["summary"]["sensors"]["top"][0]["name"] == "kinect_v1"
    assert doc["summary"]["quarantine_reasons"] == {"no depth frame within 20 ms": 1}
    dmax = doc["distributions"]["depth_max_m"]["by_source"]["real"]
    assert 2.0 < dmax["max"] < 10.0  # Kinect v1 room depth, metres
    fov = doc["distributions"]["fov_x_deg"]["by_source"]["real"]
    assert abs(fov["max"] - 63.5) < 0.5  # 2 atan(640 / (2 * 517.3))
    assert "PASS" in so and "15/15 gates passed" in so


def test_synthetic_and_real_side_by_side(mixed_report):
    out, rc, so, se = mixed_report
    assert rc == 0, so + se
    doc = json.loads((out / "report.json").read_text())
    assert doc["summary"]["by_split_source"] == {"train": {"synthetic": 8, "real": 4}}
    for m in ("fov_x_deg", "focal_35mm", "mask_fraction", "subject_depth_m", "exposure_ev", "brightness",
              "invalid_fraction", "depth_max_m", "pixel_depth_m"):
        assert set(doc["distributions"][m]["by_source"]) == {"synthetic", "real"}, m
    html = (out / "report.html").read_text()
    assert html.count('class="plot-img"') >= 15
    assert html.count('class="tile-img"') >= 6


# ------------------------------------------------------------------------------------------------
# depth sensor: simulated vs real

def write_sensor_synth(store, key, seed, w=96, h=80):
    """A synthetic sample with a simulated sensor depth: a head (ellipse, 0.6-0.7 m) in front of a
    floor-like plane whose depth grows from 0.8 m (bottom row) to 3.5 m (top row), and
    ``depth_sensor.exr`` from :func:`synthgen.rendering.depth_sensor.simulate` with the default (fitted) model
    and a dark lower half (albedo 0.02) to exercise the dark holes. Returns (record, sensor depth)."""
    from synthgen.rendering.config import DepthSensorConfig
    from synthgen.rendering.depth_sensor import simulate

    rgb, head, mask = synth_arrays(seed, w, h)
    rows = np.linspace(3.5, 0.8, h, dtype=np.float32)[:, None]
    depth = np.where(mask > 0, head, np.broadcast_to(rows, (h, w))).astype(np.float32)
    rec = synth_record(w, h, f"scan_{seed % 2}", seed)
    params = DepthSensorConfig().model_dump(exclude={"enabled"})
    albedo = np.where(np.arange(h)[:, None] >= h // 2, 0.02, 0.5) * np.ones((h, w), np.float32)
    zs, stats = simulate(depth, np.asarray(rec["camera"]["K"]), np.random.default_rng(seed), albedo=albedo,
                         specularity=np.zeros((h, w), np.float32), **params)
    rec["render"]["depth_sensor"] = {"member": "depth_sensor.exr", "model": "synthgen.rendering.depth_sensor",
                                     "params": params, "stats": stats}
    return write_sample(store, key, rgb, depth, mask, rec, extra={"depth_sensor.exr": zs}), zs


@pytest.fixture(scope="module")
def sensor_report(tmp_path_factory, real_store):
    base = tmp_path_factory.mktemp("qa")
    store = base / "sensor"
    sims = [write_sensor_synth(store, f"sens_{i:06d}", i) for i in range(8)]
    out = base / "report_sensor"
    rc, so, se = run_qa(store, real_store, "--out", out, "--sample", 4)
    return out, rc, so + se, store, sims


def test_depth_sensor_section_simulated_vs_real(sensor_report):
    from synthgen.rendering.config import DepthSensorConfig
    from synthgen.rendering.sensor_fit import fit_sigma, noise_vs_depth

    out, rc, log, store, sims = sensor_report
    assert rc == 0, log  # the extra member changes no gate
    doc = json.loads((out / "report.json").read_text())
    assert doc["summary"]["ignored_file_count"] == 0  # depth_sensor.exr is a known (optional) member
    ds = doc["depth_sensor"]
    groups = {(g["source"], g["sensor"]): g for g in ds["groups"]}
    assert set(groups) == {("synthetic", "simulated"), ("real", "kinect_v1")}
    syn, real = groups["synthetic", "simulated"], groups["real", "kinect_v1"]
    assert syn["samples"] == 8 and real["samples"] == 4
    # hole fractions: exactly what the written sensor depths hold
    holes_subj = sum(int(((z <= 0) & (read_mask(store, r["key"]) >= 0.5)).sum()) for r, z in sims)
    n_subj = sum(int((read_mask(store, r["key"]) >= 0.5).sum()) for r, z in sims)
    assert syn["hole_fraction_subject"] == pytest.approx(holes_subj / n_subj)
    assert syn["hole_fraction_all"] == pytest.approx(np.mean([r["render"]["depth_sensor"]["stats"]["hole_fraction"]
                                                              for r, _ in sims]), abs=0.01)
    assert 0.2 < real["hole_fraction_all"] < 0.35  # the TUM frame has about 25 % holes (crops differ)
    # noise vs depth: the synthetic fit recovers the model's slope; the Kinect frame's is close to it
    model = DepthSensorConfig()
    assert ds["model"]["sigma_b_per_m"] == model.sigma_b_per_m and ds["model"]["samples"] == 8
    assert syn["noise_fit"]["sigma_b_per_m"] == pytest.approx(model.sigma_b_per_m, rel=0.25)
    assert len(real["noise_vs_depth"]) >= 5
    one = fit_sigma(noise_vs_depth(read_depth(store, sims[0][0]["key"], "depth_sensor.exr"), min_count=50))
    assert one[1] == pytest.approx(model.sigma_b_per_m, rel=0.5)  # the estimator on a single sample
    assert real["noise_fit"]["sigma_b_per_m"] == pytest.approx(model.sigma_b_per_m, rel=0.4)
    html = (out / "report.html").read_text()
    assert "Depth sensor: simulated vs real" in html and "real: kinect_v1" in html
    sec = html[html.index('id="depth-sensor"'):html.index('id="contact-sheets"')]
    assert sec.count('class="plot-img"') == 3 and sec.count("<tr>") == 3
    keep = os.environ.get("QA_SCREENSHOT_DIR")
    if keep:  # the section's plots as PNG files, to look at
        import re
        Path(keep).mkdir(parents=True, exist_ok=True)
        for i, uri in enumerate(re.findall(r'src="data:image/png;base64,([^"]+)"', sec)):
            Path(keep, f"qa_sensor_plot_{i}.png").write_bytes(base64.b64decode(uri))


def test_depth_sensor_section_without_sensor_samples(mixed_report):
    out = mixed_report[0]
    doc = json.loads((out / "report.json").read_text())
    groups = doc["depth_sensor"]["groups"]  # write_sample-built synthetic samples have no depth_sensor.exr
    assert [(g["source"], g["sensor"]) for g in groups] == [("real", "kinect_v1")]
    assert doc["depth_sensor"]["model"] is None


def read_mask(store, key):
    from synthgen.exr import read_exr
    return read_exr(member_path(store, key, "mask.exr"), ["Y"])["Y"].astype(np.float32)


def read_depth(store, key, member="depth.exr"):
    from synthgen.exr import read_exr
    return depth_channel(read_exr(member_path(store, key, member))).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# planted defects

def test_planted_defects_in_shards_fail_exactly_the_right_gates(tmp_path):
    """NaN depth, an empty mask, a key duplicated across splits, a subject in two splits."""
    s = tmp_path / "store"
    for i in range(6):  # clean: train subjects s0, s1; val subject s2
        write_synth(s, f"clean_{i}", i, ["s0", "s1", "s2"][i % 3])
    write_synth(s, "nan_depth", 10, "s0")
    _, d, _ = synth_arrays(10)
    d = d.copy()
    d[5:9, 20:26] = np.nan
    replace_member(s, "nan_depth", "depth.exr", {"Z": d})
    write_synth(s, "empty_mask", 11, "s1", mask=np.zeros((40, 48), np.float32))
    t2 = tmp_path / "store_val"  # same key as a train sample, different content, a val-only subject
    write_synth(t2, "dup_key", 12, "s2")
    write_synth(s, "dup_key", 13, "s1")
    write_synth(s, "leaky_a", 14, "leaky")
    write_synth(t2, "leaky_b", 15, "leaky")
    samples = [("train", s, k) for k in ("clean_0", "clean_1", "clean_3", "clean_4", "nan_depth", "empty_mask",
                                         "dup_key", "leaky_a")]
    samples += [("val", s, k) for k in ("clean_2", "clean_5")] + [("val", t2, "dup_key"), ("val", t2, "leaky_b")]
    shards = pack_shards(tmp_path / "shards", samples)

    out = tmp_path / "rep"
    rc, so, se = run_qa(shards, "--out", out)
    assert rc == 1, so + se
    assert failing_gates(out) == {"depth_finite", "mask_not_empty", "keys_disjoint_across_splits",
                                  "subjects_disjoint_across_splits"}, so
    doc = json.loads((out / "report.json").read_text())
    assert doc["success"] is False
    assert doc["statistics"]["samples_by_split"] == {"train": 8, "val": 4}
    assert doc["statistics"]["unsuccessful_expectations"] == 4
    r = gate_result(doc, "depth_finite")["result"]
    assert r["unexpected_count"] == 1 and r["partial_unexpected_list"][0]["key"] == "nan_depth"
    assert r["partial_unexpected_list"][0]["location"].endswith("train-000000.tar")
    assert [u["key"] for u in gate_result(doc, "mask_not_empty")["result"]["partial_unexpected_list"]] == ["empty_mask"]
    r = gate_result(doc, "keys_disjoint_across_splits")["result"]
    assert r["unexpected_count"] == 2 and r["partial_unexpected_list"][0]["key"] == "dup_key"
    r = gate_result(doc, "subjects_disjoint_across_splits")["result"]
    assert r["partial_unexpected_list"] == [{"subject": "leaky", "splits": {"train": 1, "val": 1}}]
    assert "FAIL  depth_finite" in so and "FAIL:" in so.splitlines()[-1]
    html = (out / "report.html").read_text()
    assert "nan_depth" in html and "dup_key" in html


def test_planted_defects_in_stores_fail_exactly_the_right_gates(tmp_path):
    """Missing member, unit error (mm as metres), clipped exposure, full mask, exact duplicate,
    camera inconsistent with the image, invalid record, a key twice in one split."""
    a, b = tmp_path / "a", tmp_path / "b"
    for i in range(4):
        write_synth(a, f"clean_{i}", i, f"s{i % 2}")
    write_synth(a, "no_mask", 20, "s0")
    member_path(a, "no_mask", "mask.exr").unlink()
    _, d, _ = synth_arrays(21)
    write_synth(a, "millimetres", 21, "s0", depth=d * 1000)
    rgb, _, _ = synth_arrays(22)
    write_synth(a, "overexposed", 22, "s1", rgb=rgb * 20)
    rgb, d, _ = synth_arrays(23)
    write_synth(a, "full_mask", 23, "s1", rgb=rgb, depth=np.full_like(d, 0.8), mask=np.ones_like(d))
    write_synth(a, "copy_of_clean_0", 0, "s0")  # same arrays as clean_0 under another key
    rec = synth_record(48, 40, "s1", 24)
    rec["camera"]["K"][0][2] = 5 * 48  # principal point far outside the image
    rec["camera"]["fov_x_deg"] = None
    rgb, d, m = synth_arrays(24)
    write_sample(a, "bad_camera", rgb, d, m, rec)
    write_synth(a, "bad_record", 25, "s1")
    jp = member_path(a, "bad_record", "json")
    r = json.loads(jp.read_text())
    r["source"] = "alien"
    jp.write_text(json.dumps(r))
    write_synth(b, "clean_1", 26, "s1")  # same key as a/clean_1, both in split train, other content

    out = tmp_path / "rep"
    rc, so, se = run_qa(f"train={a}", f"train={b}", "--out", out, "--no-html")
    assert rc == 1, so + se
    assert failing_gates(out) == {"members_complete", "depth_in_range", "exposure_not_clipped", "mask_not_full",
                                  "no_exact_duplicates", "camera_consistent", "records_valid", "keys_unique"}, so
    doc = json.loads((out / "report.json").read_text())

    def keys(g):
        return sorted(u["key"] for u in gate_result(doc, g)["result"]["partial_unexpected_list"])

    assert keys("members_complete") == ["no_mask"]
    assert "no_mask.mask.exr missing" in gate_result(doc, "members_complete")["result"]["partial_unexpected_list"][0]["observed"]
    assert keys("depth_in_range") == ["millimetres"]
    assert keys("exposure_not_clipped") == ["overexposed"]
    assert keys("mask_not_full") == ["full_mask"]
    assert keys("no_exact_duplicates") == ["copy_of_clean_0"]
    assert gate_result(doc, "no_exact_duplicates")["result"]["unexpected_count"] == 2
    assert keys("camera_consistent") == ["bad_camera"]
    assert "principal point" in gate_result(doc, "camera_consistent")["result"]["partial_unexpected_list"][0]["observed"]
    assert keys("records_valid") == ["bad_record"]
    assert keys("keys_unique") == ["clean_1"]
    assert doc["statistics"]["samples"] == 12


def test_record_image_size_mismatch_fails_camera_gate(tmp_path):
    s = tmp_path / "s"
    write_synth(s, "ok", 1, "s0")
    write_synth(s, "resized", 2, "s0")
    jp = member_path(s, "resized", "json")
    r = json.loads(jp.read_text())
    r["image"] = {"width": 96, "height": 80}
    jp.write_text(json.dumps(r))
    out = tmp_path / "rep"
    assert run_qa(s, "--out", out, "--no-html")[0] == 1
    assert failing_gates(out) == {"camera_consistent"}
    assert not (out / "report.html").exists()
    doc = json.loads((out / "report.json").read_text())
    assert "record image 96x80 != EXR 48x40" in gate_result(doc, "camera_consistent")["result"]["partial_unexpected_list"][0]["observed"]


def test_gates_yaml_thresholds_and_errors(tmp_path):
    s = tmp_path / "s"
    write_synth(s, "ok", 1, "s0")
    rgb, _, _ = synth_arrays(2)
    write_synth(s, "bright", 2, "s0", rgb=rgb * 20)
    out = tmp_path / "rep"
    assert run_qa(s, "--out", out, "--no-html")[0] == 1
    g = tmp_path / "gates.yaml"
    g.write_text("exposure_not_clipped:\n  max_clipped_fraction: 1.0\n")
    assert run_qa(s, "--out", out, "--gates", g, "--no-html")[0] == 0
    g.write_text("exposure_not_clipped:\n  mostly: 0.5\n")  # one of two may fail
    assert run_qa(s, "--out", out, "--gates", g, "--no-html")[0] == 0
    g.write_text("exposure_not_clipped:\n  enabled: false\n")
    rc, so, _ = run_qa(s, "--out", out, "--gates", g)
    assert rc == 0 and "OFF   exposure_not_clipped" in so
    g.write_text("exposure_not_clipped:\n  max_clip_fraction: 1.0\n")  # typo: must not be ignored
    rc, so, se = run_qa(s, "--out", out, "--gates", g)
    assert rc == 2 and "gates.yaml" in se and "max_clip_fraction" in se and "Traceback" not in se
    g.write_text("depth_in_range:\n  min_m: -1\n")
    rc, _, se = run_qa(s, "--out", out, "--gates", g)
    assert rc == 2 and "depth_in_range.min_m" in se
    rc, so, _ = run_qa("--print-gates")
    assert rc == 0 and "depth_in_range:" in so and "max_m: 20.0" in so


def test_bad_inputs_exit_2(tmp_path):
    rc, _, se = run_qa(tmp_path / "nope", "--out", tmp_path / "rep")
    assert rc == 2 and "nope: no such file or folder" in se and "Traceback" not in se
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, se = run_qa(empty, "--out", tmp_path / "rep")
    assert rc == 2 and "neither a sample store" in se
    rc, _, se = run_qa(tmp_path / "empty")
    assert rc == 2 and "--out" in se


def test_damaged_shard_is_reported_not_fatal(tmp_path, synth_store):
    shards = pack_shards(tmp_path / "shards", [("train", synth_store, f"synth_{i:06d}") for i in range(4)])
    tar = shards / "train-000000.tar"
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2 + 100])  # truncated in the middle of a member
    out = tmp_path / "rep"
    rc, so, se = run_qa(shards, "--out", out, "--no-html")
    assert rc == 1, so + se
    assert "inputs_readable" in failing_gates(out)
    doc = json.loads((out / "report.json").read_text())
    probs = doc["summary"]["input_problems"]
    assert any("train-000000.tar: unreadable tar" in p for p in probs), probs
    assert doc["statistics"]["samples"] >= 1


def test_unsafe_tar_members_fail_qa_as_they_fail_shard_verify(tmp_path, synth_store):
    """A ``../x`` member, an absolute name and a symbolic link appended to a packed shard (manifest
    size and sha256 updated, so nothing else is wrong): ``synthgen shard verify`` names them and
    exits 1, and QA reports the very same problems as input errors (``inputs_readable`` fails)
    without reading them as samples."""
    shards = tmp_path / "shards"
    p = subprocess.run(SYNTHGEN + ["shard", str(synth_store), "--out", str(shards), "--split", "train=1",
                                   "--samples-per-shard", "100", "--no-progress"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    tar = shards / "train-000000.tar"
    with tarfile.open(tar, "a") as tf:
        for name in ("../x.json", "/abs/y.json"):
            data = json.dumps({"key": "x"}).encode()
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        link = tarfile.TarInfo("link_0.rgb.exr")
        link.type, link.linkname = tarfile.SYMTYPE, "../../outside.rgb.exr"
        tf.addfile(link)
    man = json.loads((shards / "_meta" / "manifest.json").read_text())
    man["shards"][0].update(bytes=tar.stat().st_size, sha256=sha256_file(tar))
    (shards / "_meta" / "manifest.json").write_text(json.dumps(man))
    expected = ["member ../x.json: unsafe name (absolute or with a '..' component)",
                "member /abs/y.json: unsafe name (absolute or with a '..' component)",
                "member link_0.rgb.exr: not a regular file"]

    v = subprocess.run(SYNTHGEN + ["shard", "verify", str(shards), "--no-progress"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert v.returncode == 1, v.stdout + v.stderr
    assert f"BAD train-000000.tar: {'; '.join(expected)}\n" in v.stdout, v.stdout

    out = tmp_path / "rep"
    rc, so, se = run_qa(shards, "--out", out, "--no-html")
    assert rc == 1, so + se
    assert failing_gates(out) == {"inputs_readable"}, so
    doc = json.loads((out / "report.json").read_text())
    assert doc["summary"]["input_problems"] == [f"{tar}: {e}" for e in expected]
    assert doc["statistics"]["samples"] == 8


def test_store_split_override_and_orphans(tmp_path, synth_store):
    s = tmp_path / "s"
    shutil.copytree(synth_store, s)
    (s / "notes.txt").write_text("hello")
    member_path(s, "synth_000003", "json").unlink()  # orphan EXRs without a record
    out = tmp_path / "rep"
    rc, so, se = run_qa(f"val={s}", "--out", out, "--no-html")
    assert rc == 1
    doc = json.loads((out / "report.json").read_text())
    assert doc["statistics"]["samples_by_split"] == {"val": 8}
    assert failing_gates(out) == {"members_complete"}
    assert doc["summary"]["ignored_files"] == [str(s / "notes.txt")]


# ------------------------------------------------------------------------------------------------
# HTML safety

EVIL = '<script>console.error("XSS-EXECUTED")</script><img src=x onerror="console.error(1)">'


@pytest.fixture(scope="module")
def evil_report(tmp_path_factory, real_store):
    base = tmp_path_factory.mktemp("qa")
    s = base / 'store_<b>bold</b>_<script>x</script>'
    for i in range(3):
        write_synth(s, f"evil_{i}", i, EVIL + f"_{i}")
    jp = member_path(s, "evil_0", "json")
    r = json.loads(jp.read_text())
    r["render"]["hdri"]["id"] = EVIL
    jp.write_text(json.dumps(r))  # the record is still valid; only its strings are hostile
    # a failing gate lists the hostile subject in the unexpected table too
    write_synth(s, "evil_9", 9, EVIL + "_0", mask=np.ones((40, 48), np.float32))
    out = base / "report_evil"
    rc, so, se = run_qa(s, real_store, "--out", out)
    assert rc == 1, so + se
    return out


def test_html_escapes_file_names_and_record_strings(evil_report):
    html = (evil_report / "report.html").read_text()
    assert "<script" not in html.lower()
    assert "onerror=" not in html.replace("onerror=&#34;", "")  # only inert escaped text
    assert "&lt;script&gt;console.error(&#34;XSS-EXECUTED&#34;)&lt;/script&gt;" in html
    assert "store_&lt;b&gt;bold&lt;/b&gt;" in html
    assert "Content-Security-Policy" in html and "default-src &#39;none&#39;" not in html
    assert "default-src 'none'" in html
    doc = json.loads((evil_report / "report.json").read_text())  # JSON keeps the raw strings
    assert any(EVIL in t["name"] for t in doc["summary"]["subjects"]["top"])


# ------------------------------------------------------------------------------------------------
# real browser (headless Chromium through the DevTools protocol)

def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


async def _cdp_open(browser: str, url: str, screenshot: Path, width: int = 1400) -> dict:
    """Load ``url`` in headless Chromium; return console/log/exception events, DOM facts and a
    full-page screenshot. Talks the DevTools protocol over aiohttp's websocket client."""
    import aiohttp

    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen([browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                                 "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
                                 f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                 "--remote-allow-origins=*", f"--window-size={width},1000", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            t0 = time.monotonic()
            while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
                assert proc.poll() is None, "chromium exited early"
                assert time.monotonic() - t0 < 60, "chromium did not open its DevTools port"
                await asyncio.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                    targets = await r.json()
                ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
                async with http.ws_connect(ws_url, max_msg_size=0) as ws:
                    events: list[dict] = []
                    ids = iter(range(1, 10 ** 6))

                    async def call(method, **params):
                        i = next(ids)
                        await ws.send_json({"id": i, "method": method, "params": params})
                        while True:
                            msg = await asyncio.wait_for(ws.receive_json(), 60)
                            if msg.get("id") == i:
                                assert "error" not in msg, msg
                                return msg["result"]
                            events.append(msg)

                    for dom in ("Runtime", "Log", "Page"):
                        await call(f"{dom}.enable")
                    await call("Page.navigate", url=url)
                    t0 = time.monotonic()
                    while not any(e.get("method") == "Page.loadEventFired" for e in events):
                        assert time.monotonic() - t0 < 60, "page did not load"
                        try:
                            events.append(await asyncio.wait_for(ws.receive_json(), 5))
                        except asyncio.TimeoutError:
                            pass
                    js = """JSON.stringify({
                        title: document.title,
                        verdict: (document.getElementById('verdict') || {}).textContent,
                        summary: !!document.getElementById('summary'),
                        gateRows: document.querySelectorAll('#gate-table tr').length,
                        plots: document.querySelectorAll('img.plot-img').length,
                        plotsDecoded: [...document.querySelectorAll('img.plot-img')].filter(i => i.complete && i.naturalWidth > 100).length,
                        tiles: document.querySelectorAll('img.tile-img').length,
                        tilesDecoded: [...document.querySelectorAll('img.tile-img')].filter(i => i.complete && i.naturalWidth > 10).length,
                        scripts: document.querySelectorAll('script').length,
                        text: document.body.innerText})"""
                    facts = json.loads((await call("Runtime.evaluate", expression=js, returnByValue=True))["result"]["value"])
                    size = (await call("Page.getLayoutMetrics"))["cssContentSize"]
                    shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                      clip={"x": 0, "y": 0, "width": width, "height": min(size["height"], 12000),
                                            "scale": 1})
                    screenshot.write_bytes(base64.b64decode(shot["data"]))
                    await asyncio.sleep(0.3)  # late console events
                    while True:
                        try:
                            events.append(await asyncio.wait_for(ws.receive_json(), 0.3))
                        except asyncio.TimeoutError:
                            break
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {"events": events, "facts": facts}


def _problems(events: list[dict]) -> list[str]:
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled":
            out.append(f"console.{p.get('type')}: {[a.get('value') for a in p.get('args', [])]}")
        elif m == "Runtime.exceptionThrown":
            out.append(f"exception: {p.get('exceptionDetails', {}).get('text')}")
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
            out.append(f"log {p['entry']['level']}: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif m == "Page.javascriptDialogOpening":
            out.append(f"dialog: {p.get('message')}")
    return out


@pytest.mark.parametrize("which", ["mixed", "evil", "sensor"])
def test_report_in_headless_chromium(which, mixed_report, evil_report, sensor_report, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required on CI (apt-get install -y chromium)")
        pytest.skip("chromium not installed")
    report = {"mixed": mixed_report[0], "evil": evil_report, "sensor": sensor_report[0]}[which] / "report.html"
    keep = os.environ.get("QA_SCREENSHOT_DIR")  # set it to look at the screenshots yourself
    shot = Path(keep) / f"qa_report_{which}.png" if keep else tmp_path / "shot.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    res = asyncio.run(_cdp_open(browser, report.resolve().as_uri(), shot))
    assert _problems(res["events"]) == []
    f = res["facts"]
    assert f["summary"] and "Samples per split and source" in f["text"]
    assert f["gateRows"] == 1 + len(ALL_GATES)
    assert f["plots"] >= 12 and f["plotsDecoded"] == f["plots"]
    assert f["tiles"] >= 4 and f["tilesDecoded"] == f["tiles"]
    assert f["scripts"] == 0
    assert "Contact sheets" in f["text"] and "Distributions" in f["text"]
    assert "Depth sensor: simulated vs real" in f["text"]
    if which == "mixed":
        assert f["verdict"] == "PASS" and "tum_fr1_xyz" in f["text"]
    elif which == "sensor":
        assert f["verdict"] == "PASS" and "synthetic (simulated sensor)" in f["text"] and "real: kinect_v1" in f["text"]
        assert f["plots"] >= 15
    else:
        assert f["verdict"] == "FAIL"
        assert 'console.error("XSS-EXECUTED")' in f["text"]  # shown as text, not run
    im = Image.open(io.BytesIO(shot.read_bytes()))
    assert im.width == 1400 and im.height > 2000
    assert np.asarray(im.convert("L")).std() > 10  # not a blank page
