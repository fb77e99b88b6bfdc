"""synthgen ingest: every capture format on real (or documented self-made) fixtures, with exact
raw-value -> metres checks at chosen pixels. Segmentation is off here (see test_ingest_masks.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from synthgen.contract import list_keys, read_sample, verify_sample
from synthgen.ingest import IngestOptions, ingest
from synthgen.ingest.common import srgb8_to_linear

FIX = Path(__file__).parent / "fixtures" / "ingest"


def run(src: Path, out: Path, **kw) -> dict:
    kw.setdefault("segment", False)
    return ingest(src, out, IngestOptions(**kw), progress=False)


def only(report: dict, out: Path, key: str):
    assert report["counts"]["found"] == report["counts"]["ingested"] + report["counts"]["quarantined"]
    assert verify_sample(out, key) == []
    return read_sample(out, key)


def test_tum(tmp_path):
    rep = run(FIX / "tum_rgbd_fr1_xyz", tmp_path)
    assert rep["format"] == "tum"
    assert rep["counts"] == {"found": 3, "ingested": 3, "quarantined": 0}
    key = "tum_rgbd_fr1_xyz-1305031102_175304"
    assert list_keys(tmp_path)[0] == key
    s = only(rep, tmp_path, key)
    # raw 5287 at (240, 320) in depth/1305031102.160407.png -> 5287 / 5000 m
    assert s.depth[240, 320] == np.float32(5287) / np.float32(5000)
    assert s.depth[100, 500] == 0.0  # raw 0 = no measurement
    # sRGB (25, 16, 16) stored linear (half precision)
    np.testing.assert_allclose(s.rgb[240, 320], srgb8_to_linear(np.array([25, 16, 16], np.uint8)), rtol=1e-3)
    rec = s.record
    assert rec["source"] == "real" and rec["subject_id"] == "tum_rgbd_fr1_xyz"
    assert rec["depth"]["metric"] is True
    cap = rec["capture"]
    assert cap["raw_to_metres"] == 1 / 5000
    assert cap["source_files"] == {"rgb": "rgb/1305031102.175304.png", "depth": "depth/1305031102.160407.png"}
    assert cap["timestamps"]["skew_s"] == pytest.approx(0.014897, abs=1e-6)
    # issue 14 item 3: the dataset's recommendation for its pre-registered depth (was the fr1 colour calibration)
    assert np.allclose(rec["camera"]["K"], [[525, 0, 319.5], [0, 525, 239.5], [0, 0, 1]])
    c2w = np.array(rec["camera"]["camera_to_world"])
    # between ground-truth samples .1658 (1.3434 0.6271 1.6606) and .1758 (1.3405 0.6266 1.6575)
    a = (1305031102.175304 - 1305031102.1658) / 0.01
    assert c2w[:3, 3] == pytest.approx((1 - a) * np.array([1.3434, 0.6271, 1.6606]) + a * np.array([1.3405, 0.6266, 1.6575]), abs=1e-6)
    assert np.allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-9)
    # re-ingest gives the same keys
    rep2 = run(FIX / "tum_rgbd_fr1_xyz", tmp_path / "again")
    assert [f["key"] for f in rep2["frames"]] == [f["key"] for f in rep["frames"]]


def test_kinect_mm_slambook2(tmp_path):
    rep = run(FIX / "kinect_v1_slambook2", tmp_path)
    assert rep["format"] == "kinect-mm" and rep["counts"]["ingested"] == 2
    s = only(rep, tmp_path, "kinect_v1_slambook2-1")
    assert s.depth[240, 320] == np.float32(2799) / np.float32(1000)
    assert s.depth[300, 100] == np.float32(4368) / np.float32(1000)
    rec = s.record
    assert np.allclose(rec["camera"]["K"], [[518, 0, 325.5], [0, 519, 253.5], [0, 0, 1]])
    c2w = np.array(rec["camera"]["camera_to_world"])
    assert c2w[:3, 3] == pytest.approx([-0.228993, 0.00645704, 0.0287837])
    assert rec["capture"]["raw_to_metres"] == 0.001


def test_redwood(tmp_path):
    rep = run(FIX / "redwood_livingroom1_simulated", tmp_path)
    assert rep["format"] == "redwood" and rep["counts"]["ingested"] == 2
    s = only(rep, tmp_path, "redwood_livingroom1_simulated-00000")
    assert s.depth[240, 320] == np.float32(2195) / np.float32(1000)
    assert s.depth[100, 100] == np.float32(1370) / np.float32(1000)
    rec = s.record
    assert np.allclose(rec["camera"]["K"], [[525, 0, 319.5], [0, 525, 239.5], [0, 0, 1]])  # column-major file
    c2w = np.array(rec["camera"]["camera_to_world"])
    assert c2w[0, 3] == pytest.approx(-0.31057997014702826) and c2w[2, 3] == pytest.approx(2.1264800183565487)


def test_diode(tmp_path):
    rep = run(FIX / "diode", tmp_path)
    assert rep["format"] == "diode" and rep["counts"] == {"found": 1, "ingested": 1, "quarantined": 0}
    key = "diode_scene_00001_scan_00002-00001_00002_indoors_000_010"
    s = only(rep, tmp_path, key)
    assert s.depth[10, 20] == 2.5
    assert s.depth[5, 5] == 0.0 and np.all(s.depth[0:4, 0:4] == 0)  # depth_mask == 0 -> invalid
    assert s.depth[47, 63] == np.float32(1.0 + 0.01 * 63 + 0.02 * 47)
    assert s.record["subject_id"] == "diode_scene_00001_scan_00002"
    assert s.record["depth"]["metric"] is True


def test_kitti(tmp_path):
    rep = run(FIX / "kitti", tmp_path)
    assert rep["format"] == "kitti"
    s = only(rep, tmp_path, "2011_09_26_drive_0002_sync-0000000005_image_02")
    assert s.depth[5, 9] == 10.0           # raw 2560 / 256
    assert s.depth[8, 12] == 3.90625       # raw 1000 / 256
    assert s.depth[1, 1] == 0.0
    assert s.record["subject_id"] == "2011_09_26_drive_0002_sync"
    assert np.allclose(s.record["camera"]["K"], [[38, 0, 31.5], [0, 38, 11.5], [0, 0, 1]])


def test_float_exr(tmp_path):
    import OpenEXR

    rep = run(FIX / "exr", tmp_path)
    assert rep["format"] == "exr" and rep["counts"]["ingested"] == 2
    s = only(rep, tmp_path, "exr-frame_000")
    assert s.depth[3, 4] == 1.25 and s.depth[0, 0] == 0.0  # NaN -> invalid
    with OpenEXR.File(str(FIX / "exr" / "frame_000.exr"), separate_channels=True) as f:
        r = np.asarray(f.channels()["R"].pixels)
    assert np.array_equal(s.rgb[..., 0], r.astype(np.float32))  # linear colour kept as is
    s1 = only(rep, tmp_path, "exr-frame_001")
    assert np.all(s1.depth == 2.0)
    assert "sibling frame_001.png" in s1.record["capture"]["rgb_source"]
    # --depth-scale: EXR in millimetres
    rep = run(FIX / "exr", tmp_path / "mm", depth_scale=1000.0)
    assert read_sample(tmp_path / "mm", "exr-frame_000").depth[3, 4] == np.float32(1.25) / np.float32(1000)


def test_gdepth_extended_xmp_relative(tmp_path):
    src = FIX / "gdepth" / "gdepth_lensblur_table.jpg"
    rep = run(src, tmp_path, default_intrinsics=True)
    assert rep["format"] == "gdepth"
    s = only(rep, tmp_path, "gdepth-gdepth_lensblur_table")
    near, far = 12.423587799072266, 390.539306640625
    # raw 189 at (512, 384) of the GDepth PNG (RangeInverse)
    exp = np.float32(far * near / (far - np.float32(189 / 255.0) * (far - near)))
    assert s.depth[512, 384] == pytest.approx(exp, rel=1e-6)
    assert s.record["depth"]["metric"] is False  # no GDepth:Units -> relative
    assert s.record["capture"]["gdepth"]["format"] == "RangeInverse"
    assert s.record["capture"]["rgb_source"].startswith("GImage:Data")
    assert s.rgb.shape == (1024, 768, 3)


def test_gdepth_needs_intrinsics(tmp_path):
    rep = run(FIX / "gdepth" / "gdepth_lensblur_table.jpg", tmp_path)
    assert rep["counts"] == {"found": 1, "ingested": 0, "quarantined": 1}
    assert [r["code"] for r in rep["frames"][0]["reasons"]] == ["intrinsics_missing"]
    assert list_keys(tmp_path) == []


def test_dynamic_depth(tmp_path):
    rep = run(FIX / "dynamic_depth", tmp_path, default_intrinsics=True)
    assert rep["format"] == "dynamic-depth" and rep["counts"]["ingested"] == 2
    s = only(rep, tmp_path, "dynamic_depth-dd_metric")
    assert s.record["depth"]["metric"] is True
    assert s.depth[10, 20] == pytest.approx(np.float32(32768 / 65535.0) * 4.0 + 0.5, rel=1e-6)
    assert np.allclose(s.record["camera"]["K"], [[140, 0, 79.5], [0, 140, 44.5], [0, 0, 1]])
    r = only(rep, tmp_path, "dynamic_depth-dd_relative")
    assert r.record["depth"]["metric"] is False
    assert "default" in r.record["camera"]["intrinsics_source"]


def test_heic_disparity_relative(tmp_path):
    rep = run(FIX / "heic" / "iphone13pro_portrait_pug.heic", tmp_path, default_intrinsics=True)
    assert rep["format"] == "heic"
    s = only(rep, tmp_path, "heic-iphone13pro_portrait_pug")
    assert s.rgb.shape == (576, 768, 3)  # colour resampled onto the 768x576 depth grid
    d_min, d_max = 1.498046875, 4.3828125
    # raw 103 at (288, 384) of the 8-bit disparity image (uniform disparity)
    assert s.depth[288, 384] == pytest.approx(1.0 / (d_min + 103 / 255.0 * (d_max - d_min)), rel=1e-6)
    rec = s.record
    assert rec["depth"]["metric"] is False
    assert rec["capture"]["heic"]["representation"] == "uniform_disparity"
    assert "P3" in rec["capture"]["colour"]
    assert "EXIF" in rec["camera"]["intrinsics_source"]  # iPhone EXIF FocalLengthIn35mmFilm


def test_image_depth_pairs_relative(tmp_path):
    rep = run(FIX / "image_depth_pairs", tmp_path, default_intrinsics=True)
    assert rep["format"] == "image-depth-pairs" and rep["counts"]["ingested"] == 2
    s = only(rep, tmp_path, "image_depth_pairs-hut")
    assert s.record["depth"]["metric"] is False
    assert s.record["subject_id"] == "image_depth_pairs-hut"
    # 8-bit 221 at (290, 512): RangeInverse with nominal near 1, far 10
    assert s.depth[290, 512] == pytest.approx(10.0 / (10.0 - 221 / 255.0 * 9.0), rel=1e-6)


def test_report_written_and_consistent(tmp_path):
    rep = run(FIX / "kitti", tmp_path)
    on_disk = json.loads((tmp_path / "_meta" / "ingest_report.json").read_text())
    assert on_disk["counts"] == rep["counts"]
    assert (tmp_path / "_meta" / "ingest_quarantine.json").exists()
    assert rep["options"]["segment"] is False
