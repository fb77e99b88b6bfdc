"""synthgen ingest, issue 14 item 2: SUN RGB-D, NYU Depth v2 raw dumps, Azure Kinect MKV, iPhone
TrueDepth HEIC, and clean failures for formats that cannot read an input.

No real SUN RGB-D frame, raw NYU dump or Azure Kinect recording is available here: those fixtures
are BUILT FROM THE PUBLISHED FORMAT DESCRIPTIONS (tests/fixtures/ingest/make_fixtures.py; pixels of
the SUN and NYU fixtures come from a real NYU v2 labeled frame). The TrueDepth HEIC is a real
photo of an identifiable person: tests only. Segmentation is off here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthgen.contract import read_sample, verify_sample
from synthgen.ingest import IngestOptions, SourceError, ingest
from synthgen.ingest.cli import main as cli_main
from synthgen.ingest.formats.nyu_raw import (K_DEPTH, K_RGB, R_DEPTH_TO_RGB, T_DEPTH_TO_RGB,
                                             disparity_to_metres)

FIX = Path(__file__).parent / "fixtures" / "ingest"
SYNC_MM = FIX / "nyu_v2_labeled_sync" / "depth" / "sync_depth_00000.png"


def run(src, out, **kw):
    kw.setdefault("segment", False)
    rep = ingest(src, out, IngestOptions(**kw), progress=False)
    for f in rep["frames"]:
        if f["status"] == "ingested":
            assert verify_sample(out, f["key"]) == []
    return rep


def test_sunrgbd_bit_rotated_millimetres(tmp_path):
    rep = run(FIX / "sunrgbd" / "NYU0001", tmp_path)
    assert rep["format"] == "sunrgbd" and rep["counts"] == {"found": 1, "ingested": 1, "quarantined": 0}
    s = read_sample(tmp_path, "NYU0001-NYU0001")
    mm = np.asarray(Image.open(SYNC_MM))
    # published decode: mm = (d >> 3) | (d << 13) (16-bit), metres = mm / 1000
    d = int(np.asarray(Image.open(FIX / "sunrgbd" / "NYU0001" / "depth" / "NYU0001.png"))[240, 320])
    assert ((d >> 3) | (d << 13)) & 0xFFFF == mm[240, 320] == 3015
    assert s.depth[240, 320] == np.float32(3015) / np.float32(1000)
    stored = int(np.asarray(Image.open(FIX / "sunrgbd" / "NYU0001" / "depth" / "NYU0001.png"))[10, 600])
    assert stored % 8 != 0 and ((stored >> 3) | (stored << 13)) & 0xFFFF == 9000  # beyond 8.192 m: bits wrapped
    assert s.depth[10, 600] == np.float32(9.0)  # /8000 would give stored/8000
    rec = s.record
    assert np.allclose(rec["camera"]["K"], [[518.8579, 0, 325.58245], [0, 519.46961, 253.73617], [0, 0, 1]])
    assert rec["capture"]["raw_to_metres"] is None and "rotated" in rec["capture"]["depth_units"]
    assert rec["capture"]["depth_scale"]["source"] == "layout"


def _nyu_disparity(path: Path) -> np.ndarray:
    data = path.read_bytes()
    header = b"P5\n640 480\n65535\n"
    assert data.startswith(header)
    return np.frombuffer(data[len(header):], "<u2").reshape(480, 640)  # little-endian, as NYU dumps are


def test_nyu_raw_disparity_registered_by_reprojection(tmp_path):
    src = FIX / "nyu_raw" / "bedroom_0001"
    rep = run(src, tmp_path)
    assert rep["format"] == "nyu-raw" and rep["counts"]["ingested"] == 1
    s = read_sample(tmp_path, "bedroom_0001-1315403270_598834-3851839398")
    cap = s.record["capture"]
    assert "little-endian" in cap["pgm_byte_order"] and s.record["depth"]["metric"] is True
    assert np.allclose(s.record["camera"]["K"], [[K_RGB[0], 0, K_RGB[2]], [0, K_RGB[1], K_RGB[3]], [0, 0, 1]])
    disp = _nyu_disparity(src / "d-1315403270.612296-3850931981.pgm")
    # the published conversion, exactly
    for d in (600, 800, 1000):
        assert disparity_to_metres(np.array([d]))[0] == np.float32(351.3 / (1092.5 - d))
    assert disparity_to_metres(np.array([2047]))[0] == 0.0
    # reprojection: depth pixel -> 3D (depth camera) -> colour camera -> pixel, with the published calibration
    fx, fy, cx, cy = K_DEPTH
    win = np.lib.stride_tricks.sliding_window_view(disp, (5, 5))
    flat = (win.max(axis=(2, 3)) == win.min(axis=(2, 3))) & (disp[2:-2, 2:-2] < 2047)
    vs, us = np.nonzero(flat)  # pixels whose 5x5 neighbourhood has one disparity: no occlusion ambiguity
    assert len(vs) > 100
    checked = 0
    for i in np.linspace(0, len(vs) - 1, 12).astype(int):
        v, u = int(vs[i]) + 2, int(us[i]) + 2
        z = 351.3 / (1092.5 - float(disp[v, u]))
        X = np.array([(u - cx) * z / fx, (v - cy) * z / fy, z])
        P = R_DEPTH_TO_RGB @ X + T_DEPTH_TO_RGB
        uc = int(round(K_RGB[0] * P[0] / P[2] + K_RGB[2]))
        vc = int(round(K_RGB[1] * P[1] / P[2] + K_RGB[3]))
        assert s.depth[vc, uc] == pytest.approx(P[2], abs=1e-3), (v, u)  # z-buffered splat: within 1 mm
        checked += 1
    assert checked == 12
    # the registered depth agrees with the real labeled frame it was derived from (round trip)
    mm = np.asarray(Image.open(SYNC_MM)) / 1000.0
    both = (s.depth > 0) & (mm > 0)
    assert both.mean() > 0.6 and np.median(np.abs(s.depth - mm)[both]) < 0.01


def test_nyu_raw_big_endian_pgm_gives_the_same_depth(tmp_path):
    src = tmp_path / "dump_be"
    src.mkdir()
    orig = FIX / "nyu_raw" / "bedroom_0001"
    for p in orig.iterdir():
        data = p.read_bytes()
        if p.suffix == ".pgm":  # rewrite as the PGM spec says: big-endian
            header = b"P5\n640 480\n65535\n"
            data = header + np.frombuffer(data[len(header):], "<u2").astype(">u2").tobytes()
        (src / p.name).write_bytes(data)
    a = run(orig, tmp_path / "le")
    b = run(src, tmp_path / "be")
    key = "1315403270_598834-3851839398"
    sa = read_sample(tmp_path / "le", f"bedroom_0001-{key}")
    sb = read_sample(tmp_path / "be", f"dump_be-{key}")
    assert np.array_equal(sa.depth, sb.depth)
    assert "big-endian" in sb.record["capture"]["pgm_byte_order"]
    assert a["counts"] == b["counts"]


def test_azure_kinect_mkv_depth_camera_view(tmp_path):
    import json

    import av

    src = FIX / "azure_kinect"
    rep = run(src, tmp_path)
    assert rep["format"] == "azure-kinect" and rep["counts"] == {"found": 2, "ingested": 2, "quarantined": 0}
    keys = sorted(f["key"] for f in rep["frames"])
    s = read_sample(tmp_path, keys[0])
    assert s.depth.shape == (288, 320)  # NFOV_2X2BINNED
    assert s.depth[100, 150] == np.float32(1234) / np.float32(1000)
    assert s.depth[50, 2] == 0.0 and s.depth[50, 300] == np.float32(2.0)
    assert read_sample(tmp_path, keys[1]).depth[50, 300] == np.float32(2.01)
    # colour is the IR image (grey), not the unregistered COLOR track
    assert np.array_equal(s.rgb[..., 0], s.rgb[..., 1]) and np.array_equal(s.rgb[..., 1], s.rgb[..., 2])
    cap = s.record["capture"]
    assert "IR" in cap["view"] and "not used" in cap["view"]
    # K: the Sensor SDK's mode-specific conversion of the normalised calibration
    with av.open(str(src / "k4a_capture.mkv")) as c:
        calib = json.loads(bytes(c.streams.attachments[0].data))
    cx, cy, fx, fy = calib["CalibrationInformation"]["Cameras"][0]["Intrinsics"]["ModelParameters"][:4]
    K = np.array(s.record["camera"]["K"])
    assert K[0, 0] == pytest.approx(fx * 512) and K[1, 1] == pytest.approx(fy * 512)
    assert K[0, 2] == pytest.approx(cx * 512 - 96 - 0.5) and K[1, 2] == pytest.approx(cy * 512 - 90 - 0.5)
    assert s.record["camera"]["distortion"]["applied_to_images"] is False


def test_truedepth_heic_is_metric_rear_camera_stays_relative(tmp_path):
    rep = run(FIX / "heic_truedepth", tmp_path)
    assert rep["format"] == "heic" and rep["counts"]["ingested"] == 1
    s = read_sample(tmp_path, "heic_truedepth-iphone14_truedepth_person")
    rec = s.record
    assert rec["depth"]["metric"] is True
    assert rec["capture"]["apple_depth_data"]["Accuracy"] == "absolute"
    d = s.depth
    assert d.shape == (640, 480)
    face = float(np.median(d[300:340, 220:260]))
    wall = float(np.median(d[10:60, 10:60]))
    assert 0.25 < face < 0.40, face
    assert 1.6 < wall < 2.1, wall
    # exact published conversion at one pixel: 1 / (d_min + v/255 (d_max - d_min)), 1/m
    import pillow_heif

    h = pillow_heif.open_heif(str(FIX / "heic_truedepth" / "iphone14_truedepth_person.heic"))
    dimg = h.info["depth_images"][0]
    meta = dimg.info["metadata"]
    v = int(np.asarray(dimg.to_pillow())[320, 240])
    disp = meta["d_min"] + np.float32(v / 255.0) * (meta["d_max"] - meta["d_min"])
    assert d[320, 240] == pytest.approx(1.0 / disp, rel=1e-6)
    # the rear dual-camera portrait says Accuracy=relative: not metric
    rep = run(FIX / "heic" / "iphone13pro_portrait_pug.heic", tmp_path / "pug", default_intrinsics=True)
    pug = read_sample(tmp_path / "pug", "heic-iphone13pro_portrait_pug").record
    assert pug["depth"]["metric"] is False and pug["capture"]["apple_depth_data"]["Accuracy"] == "relative"


def test_formats_that_cannot_read_an_input_exit_2_listing_what_was_tried(tmp_path, capsys):
    assert cli_main([str(FIX / "kinect_v1_slambook2"), "--out", str(tmp_path / "a"), "--format", "kitti", "-q"]) == 2
    err = capsys.readouterr().err
    assert "formats tried: kitti" in err and "kinect-mm" in err and "Traceback" not in err
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    assert cli_main([str(junk), "--out", str(tmp_path / "b"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "formats tried:" in err and "nyu-raw" in err and "azure-kinect" in err
    for fmt in ("nyu-raw", "azure-kinect", "sunrgbd", "tum"):
        with pytest.raises(SourceError, match=f"formats tried: {fmt}"):
            ingest(FIX / "kitti", tmp_path / fmt, IngestOptions(format=fmt, segment=False), progress=False)
