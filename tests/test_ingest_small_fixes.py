"""synthgen ingest, issue 14 items 3 (TUM intrinsics) and 6 (small problems)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synthgen.contract import read_sample
from synthgen.ingest import IngestOptions, ingest
from synthgen.ingest.cli import main as cli_main

FIX = Path(__file__).parent / "fixtures" / "ingest"
ROOT = Path(__file__).resolve().parent.parent


def run(src, out, **kw):
    kw.setdefault("segment", False)
    return ingest(src, out, IngestOptions(**kw), progress=False)


def codes(rep, key):
    f = next(f for f in rep["frames"] if f["key"] == key)
    return f["status"], [(r["code"], r["detail"]) for r in f.get("reasons", [])]


@pytest.fixture
def tum(tmp_path):
    dst = tmp_path / "tum_fr1"
    shutil.copytree(FIX / "tum_rgbd_fr1_xyz", dst)
    return dst


def test_tum_uses_the_documented_recommendation_for_registered_depth(tum, tmp_path):
    run(tum, tmp_path / "out")
    cam = read_sample(tmp_path / "out", "tum_fr1-1305031102_175304").record["camera"]
    assert np.allclose(cam["K"], [[525, 0, 319.5], [0, 525, 239.5], [0, 0, 1]])
    assert "recommendation" in cam["intrinsics_source"] and "ROS default" in cam["intrinsics_source"]
    pub = cam["tum_published_calibration"]  # the fr1 colour calibration, recorded but not used
    assert pub["camera"] == "freiburg1 colour" and pub["used"] is False and pub["fx"] == 517.3
    assert "distortion" not in cam  # no distortion model with the recommended parameters


def test_help_does_not_claim_no_segmentation_is_on(capsys):
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    i = text.index("--no-segmentation skip")
    seg_help = text[i:i + 300]
    assert "(default: True)" not in seg_help and "segmentation is on by default" in seg_help
    assert "(default: False)" not in text
    assert "--max-holes MAX_HOLES largest fraction of invalid depth pixels (default: 0.6)" in text


def test_missing_listed_rgb_and_empty_png_are_named(tum, tmp_path):
    (tum / "rgb" / "1305031102.211214.png").unlink()   # listed in rgb.txt, not on disk
    (tum / "rgb" / "1305031102.275326.png").write_bytes(b"")  # empty file
    rep = run(tum, tmp_path / "out")
    status, reasons = codes(rep, "tum_fr1-1305031102_211214")
    assert status == "quarantined" and reasons[0][0] == "missing_file"
    assert "rgb/1305031102.211214.png" in reasons[0][1] and "rgb.txt" in reasons[0][1]
    status, reasons = codes(rep, "tum_fr1-1305031102_275326")
    assert status == "quarantined" and [c for c, _ in reasons] == ["empty_file"]
    assert "1305031102.275326.png" in reasons[0][1]
    # same in a kinect-mm layout and for an empty depth file
    slam = tmp_path / "slam"
    shutil.copytree(FIX / "kinect_v1_slambook2", slam)
    (slam / "depth" / "2.pgm").write_bytes(b"")
    rep = run(slam, tmp_path / "out2")
    assert [c for c, _ in codes(rep, "slam-2")[1]] == ["empty_file"]


@pytest.mark.slow
def test_segmentation_writes_nothing_outside_out(tmp_path):
    """mediapipe imports matplotlib, whose font cache must not land in $HOME (fresh process, empty HOME)."""
    home = tmp_path / "home"
    home.mkdir()
    src = tmp_path / "tum_one"
    shutil.copytree(FIX / "tum_rgbd_fr1_xyz", src)
    (src / "rgb.txt").write_text("\n".join((src / "rgb.txt").read_text().splitlines()[:4]) + "\n")
    for p in list((src / "rgb").iterdir())[1:]:
        p.unlink()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPLCONFIGDIR", "XDG_"))}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "synthgen.ingest.cli", str(src), "--out", str(out), "-q"],
                         capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert res.returncode in (0, 1), res.stderr[-2000:]
    assert list(home.rglob("*")) == []
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
    assert sorted(os.listdir(tmp_path)) == ["home", "out", "tum_one"]
