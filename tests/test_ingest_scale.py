"""synthgen ingest, issue 14 item 1: the depth scale is never assumed silently where the layout
does not fix it; it is inferred from evidence (and the report warns) or refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthgen.contract import read_sample
from synthgen.ingest import IngestOptions, SourceError, ingest
from synthgen.ingest.cli import main as cli_main
from synthgen.ingest.scale import sun_rotate, sun_unrotate

FIX = Path(__file__).parent / "fixtures" / "ingest"


def run(src, out, **kw):
    kw.setdefault("segment", False)
    return ingest(src, out, IngestOptions(**kw), progress=False)


@pytest.fixture
def tum_as_kinect(tmp_path):
    """The real TUM fr1 frames (raw / 5000) in a kinect-mm layout: color/ + depth/ paired by stem,
    with an intrinsics file that states no depth scale (the issue's silent x5 error)."""
    src = FIX / "tum_rgbd_fr1_xyz"
    dst = tmp_path / "tum_in_kinect_layout"
    (dst / "color").mkdir(parents=True)
    (dst / "depth").mkdir()
    rgbs = [ln.split()[1] for ln in (src / "rgb.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    deps = [ln.split()[1] for ln in (src / "depth.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    for i, (r, d) in enumerate(zip(rgbs, deps)):
        shutil.copy(src / r, dst / "color" / f"{i}.png")
        shutil.copy(src / d, dst / "depth" / f"{i}.png")
    (dst / "camera_intrinsics.json").write_text(json.dumps({"fx": 517.3, "fy": 516.5, "cx": 318.6, "cy": 255.3}))
    return dst, src / deps[0]


def test_tum_frames_in_kinect_layout_are_inferred_as_5000_with_a_warning(tum_as_kinect, tmp_path, capsys):
    src, depth0 = tum_as_kinect
    rep = run(src, tmp_path / "out")
    assert rep["format"] == "kinect-mm" and rep["counts"]["ingested"] == 3
    s = read_sample(tmp_path / "out", "tum_in_kinect_layout-0")
    raw = np.asarray(Image.open(depth0))
    assert s.depth[240, 320] == np.float32(raw[240, 320]) / np.float32(5000)  # never raw / 1000
    dsc = s.record["capture"]["depth_scale"]
    assert dsc["value"] == 5000 and dsc["source"] == "inferred"
    assert "quantisation" in dsc["reason"]
    ev = dsc["evidence"]
    assert 0.6 < ev["scale_5000"]["kinect_quantisation_ratio"] < 1.6
    assert ev["scale_1000"]["kinect_quantisation_ratio"] < 0.3  # 5x off under millimetres
    assert s.record["capture"]["raw_to_metres"] == 1 / 5000
    assert len(rep["warnings"]) == 1 and "inferred" in rep["warnings"][0]
    assert cli_main([str(src), "--out", str(tmp_path / "cli"), "--no-segmentation", "-q"]) == 0
    assert "WARNING: depth scale not stated" in capsys.readouterr().out


def test_explicit_scale_is_recorded_as_stated(tum_as_kinect, tmp_path):
    src, _ = tum_as_kinect
    rep = run(src, tmp_path / "out", depth_scale=5000.0)
    assert rep["warnings"] == []
    dsc = read_sample(tmp_path / "out", "tum_in_kinect_layout-0").record["capture"]["depth_scale"]
    assert dsc == {"value": 5000.0, "source": "option", "reason": "--depth-scale 5000"}


def test_intrinsics_file_scale_and_range_inference(tmp_path):
    src = tmp_path / "slam"
    shutil.copytree(FIX / "kinect_v1_slambook2", src)
    rep = run(src, tmp_path / "a")  # the file states depth_scale 1000
    dsc = read_sample(tmp_path / "a", "slam-1").record["capture"]["depth_scale"]
    assert dsc["source"] == "intrinsics_file" and dsc["value"] == 1000 and rep["warnings"] == []
    k = json.loads((src / "camera_intrinsics.json").read_text())
    del k["depth_scale"]
    (src / "camera_intrinsics.json").write_text(json.dumps(k))
    rep = run(src, tmp_path / "b")  # not quantised (slambook depth is smoothed): range evidence decides
    dsc = read_sample(tmp_path / "b", "slam-1").record["capture"]["depth_scale"]
    assert dsc["source"] == "inferred" and dsc["value"] == 1000 and "range" in dsc["reason"]
    assert rep["warnings"]


def test_ambiguous_scale_is_refused(tmp_path, capsys):
    """Smooth depth of 2.5-5.0 raw k-units fits both 2.5-5 m (/1000) and 0.5-1 m (/5000): refused."""
    src = tmp_path / "ambiguous"
    (src / "color").mkdir(parents=True)
    (src / "depth").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(src / "color" / f"{i}.png")
        Image.fromarray(rng.integers(2500, 5000, (48, 64)).astype(np.uint16)).save(src / "depth" / f"{i}.png")
    with pytest.raises(SourceError, match="ambiguous.*--depth-scale"):
        run(src, tmp_path / "out", default_intrinsics=True)
    assert cli_main([str(src), "--out", str(tmp_path / "o2"), "-q", "--default-intrinsics"]) == 2
    assert "ambiguous" in capsys.readouterr().err
    assert run(src, tmp_path / "o3", default_intrinsics=True, depth_scale=1000.0)["counts"]["ingested"] == 2


def test_sun_rotation_round_trip():
    mm = np.array([0, 1, 1000, 8191, 8192, 9000, 65535], np.uint16)
    stored = sun_unrotate(mm)
    assert np.all(stored[mm < 8192] % 8 == 0)
    assert np.array_equal(sun_rotate(stored), mm)
    assert stored[5] / 8000 != 9.0  # read linearly, 9 m becomes garbage


@pytest.fixture
def sun_as_kinect(tmp_path):
    """The SUN RGB-D fixture frame put in a kinect-mm layout (color/ + depth/)."""
    src = FIX / "sunrgbd" / "NYU0001"
    dst = tmp_path / "sun_in_kinect_layout"
    (dst / "color").mkdir(parents=True)
    (dst / "depth").mkdir()
    shutil.copy(src / "image" / "NYU0001.jpg", dst / "color" / "1.jpg")
    shutil.copy(src / "depth" / "NYU0001.png", dst / "depth" / "1.png")
    (dst / "intrinsics.json").write_text(json.dumps({"fx": 518.8579, "fy": 519.46961, "cx": 325.58245,
                                                     "cy": 253.73617}))
    return dst


def test_sun_frames_with_depth_scale_8000_are_refused_naming_the_rotation(sun_as_kinect, tmp_path, capsys):
    for extra in (["--depth-scale", "8000"], []):
        assert cli_main([str(sun_as_kinect), "--out", str(tmp_path / "o"), "-q", "--no-segmentation", *extra]) == 2
        err = capsys.readouterr().err
        assert "bit-rotated" in err and "(d >> 3) | (d << 13)" in err and "--format sunrgbd" in err
        assert "Traceback" not in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").glob("*.json"))
    # the SUN layout itself: the scale is fixed by the format, --depth-scale is refused too
    assert cli_main([str(FIX / "sunrgbd" / "NYU0001"), "--out", str(tmp_path / "p"), "-q", "--no-segmentation",
                     "--depth-scale", "8000"]) == 2
    assert "does not apply to SUN RGB-D" in capsys.readouterr().err
