"""synthgen ingest: validation, quarantine and bad input. Every frame found is either ingested or
quarantined with its reasons; counts add up; nothing is written outside --out."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from synthgen.contract import KEY_RE, list_keys, read_sample, verify_sample
from synthgen.ingest import IngestOptions, SourceError, Thresholds, ingest
from synthgen.ingest.cli import main as cli_main

FIX = Path(__file__).parent / "fixtures" / "ingest"


def run(src, out, th=None, **kw):
    kw.setdefault("segment", False)
    if th:
        kw["thresholds"] = Thresholds(**th)
    rep = ingest(src, out, IngestOptions(**kw), progress=False)
    c = rep["counts"]
    assert c["found"] == c["ingested"] + c["quarantined"] == len(rep["frames"])
    ingested = sorted(f["key"] for f in rep["frames"] if f["status"] == "ingested")
    assert list_keys(out) == ingested  # exactly the ingested frames are in the store
    for k in ingested:
        assert verify_sample(out, k) == []
    q = json.loads((Path(out) / "_meta" / "ingest_quarantine.json").read_text())["quarantined"]
    assert sorted(e["key"] for e in q) == sorted(f["key"] for f in rep["frames"] if f["status"] == "quarantined")
    return rep


def codes(rep, key):
    f = next(f for f in rep["frames"] if f["key"] == key)
    return f["status"], [r["code"] for r in f.get("reasons", [])]


@pytest.fixture
def slam(tmp_path):
    dst = tmp_path / "slam_seq"
    shutil.copytree(FIX / "kinect_v1_slambook2", dst)
    return dst


@pytest.fixture
def tum(tmp_path):
    dst = tmp_path / "tum_fr1"
    shutil.copytree(FIX / "tum_rgbd_fr1_xyz", dst)
    return dst


def test_truncated_and_corrupt_images(tum, tmp_path):
    p = tum / "rgb" / "1305031102.211214.png"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    (tum / "depth" / "1305031102.262886.png").write_bytes(os.urandom(5000))
    rep = run(tum, tmp_path / "out")
    assert codes(rep, "tum_fr1-1305031102_211214") == ("quarantined", ["unreadable_rgb"])
    assert codes(rep, "tum_fr1-1305031102_275326") == ("quarantined", ["not_an_image"])
    assert codes(rep, "tum_fr1-1305031102_175304") == ("ingested", [])
    detail = next(f for f in rep["frames"] if f["key"] == "tum_fr1-1305031102_211214")["reasons"][0]["detail"]
    assert "1305031102.211214.png" in detail and "truncated" in detail


def test_non_image_files_and_mismatched_sizes(slam, tmp_path):
    (slam / "color" / "notes.txt").write_text("not an image")
    (slam / "depth" / "2.pgm").write_bytes(b"this is text, not a PGM" * 10)
    Image.open(slam / "color" / "1.png").resize((320, 240)).save(slam / "color" / "1.png")
    rep = run(slam, tmp_path / "out")
    assert codes(rep, "slam_seq-1") == ("quarantined", ["resolution_mismatch"])
    assert codes(rep, "slam_seq-2") == ("quarantined", ["not_an_image"])
    assert codes(rep, "slam_seq-file-notes_txt") == ("quarantined", ["not_an_image"])
    assert rep["counts"] == {"found": 3, "ingested": 0, "quarantined": 3}


def test_empty_and_missing_source(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="empty"):
        ingest(tmp_path / "empty", tmp_path / "out", IngestOptions(segment=False), progress=False)
    assert cli_main([str(tmp_path / "empty"), "--out", str(tmp_path / "out"), "-q"]) == 2
    assert "empty" in capsys.readouterr().err
    assert cli_main([str(tmp_path / "nope"), "--out", str(tmp_path / "out"), "-q"]) == 2
    assert not (tmp_path / "out").exists()


def test_unreadable_xmp(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    data = (FIX / "gdepth" / "gdepth_lensblur_table.jpg").read_bytes()
    broken = data.replace(b'GDepth:Format="RangeInverse"', b'GDepth:Format="RangeInverse ', 1)  # same length
    assert len(broken) == len(data) and broken != data
    (src / "broken_xml.jpg").write_bytes(broken)
    # drop one extended-XMP chunk: the stitched depth data no longer adds up
    i = data.find(b"http://ns.adobe.com/xmp/extension/") - 4
    seg_len = int.from_bytes(data[i + 2:i + 4], "big")
    (src / "missing_chunk.jpg").write_bytes(data[:i] + data[i + 2 + seg_len:])
    rep = run(src, tmp_path / "out", format="gdepth", default_intrinsics=True)
    assert codes(rep, "photos-broken_xml") == ("quarantined", ["unreadable_xmp"])
    assert codes(rep, "photos-missing_chunk") == ("quarantined", ["unreadable_xmp"])
    assert "missing chunks" in json.dumps(rep["frames"])


def test_symlink_loops(slam, tmp_path):
    os.symlink("3.png", slam / "color" / "3.png")  # a link to itself
    shutil.copy(slam / "depth" / "1.pgm", slam / "depth" / "3.pgm")
    rep = run(slam, tmp_path / "out")
    assert codes(rep, "slam_seq-3") == ("quarantined", ["symlink_loop"])
    assert rep["counts"]["ingested"] == 2
    diode = tmp_path / "diode"
    shutil.copytree(FIX / "diode", diode)
    os.symlink("..", diode / "scene_00001" / "loop")  # folder loop: the walk must end
    rep = run(diode, tmp_path / "out2")
    assert rep["counts"]["ingested"] == 1


def test_odd_file_names(slam, tmp_path):
    odd = "frame 1 (ü)"
    shutil.move(slam / "color" / "1.png", slam / "color" / f"{odd}.png")
    shutil.move(slam / "depth" / "1.pgm", slam / "depth" / f"{odd}.pgm")
    rep = run(slam, tmp_path / "out")
    keys = [f["key"] for f in rep["frames"]]
    assert all(KEY_RE.match(k) for k in keys)
    odd_key = next(k for k in keys if k.startswith("slam_seq-frame_1"))
    assert codes(rep, odd_key)[0] == "ingested"
    rep2 = run(slam, tmp_path / "out2")
    assert [f["key"] for f in rep2["frames"]] == keys  # stable


def test_nothing_written_outside_out(tum, tmp_path):
    before_src = sorted(p.relative_to(tum) for p in tum.rglob("*"))
    before_tmp = sorted(os.listdir(tmp_path))
    run(tum, tmp_path / "out")
    assert sorted(p.relative_to(tum) for p in tum.rglob("*")) == before_src
    assert sorted(os.listdir(tmp_path)) == sorted(before_tmp + ["out"])
    assert not any(n.startswith(".tmp-") for n in os.listdir(tmp_path / "out"))


def test_ambiguous_format_lists_candidates(tmp_path, capsys):
    src = tmp_path / "mixed"
    src.mkdir()
    shutil.copy(FIX / "exr" / "frame_000.exr", src)
    shutil.copy(FIX / "heic" / "iphone13pro_portrait_pug.heic", src)
    with pytest.raises(SourceError, match="ambiguous.*exr.*heic|ambiguous.*heic.*exr"):
        ingest(src, tmp_path / "out", IngestOptions(segment=False), progress=False)
    assert cli_main([str(src), "--out", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "candidates" in err and "exr" in err and "heic" in err


def test_duplicates_and_8bit_depth(slam, tmp_path):
    shutil.copy(slam / "color" / "1.png", slam / "color" / "3.png")
    shutil.copy(slam / "depth" / "1.pgm", slam / "depth" / "3.pgm")
    d = np.asarray(Image.open(slam / "depth" / "2.pgm"))
    Image.fromarray((d // 256).astype(np.uint8)).save(slam / "depth" / "2.pgm")  # 8-bit save mistake
    rep = run(slam, tmp_path / "out")
    assert codes(rep, "slam_seq-3") == ("quarantined", ["duplicate"])
    assert "slam_seq-1" in json.dumps(rep["frames"])
    assert "depth_8bit" in codes(rep, "slam_seq-2")[1]  # (also out of range: raw/1000 < 0.3 m)
    assert codes(rep, "slam_seq-1") == ("ingested", [])


def test_timestamp_association_and_skew(tum, tmp_path):
    rep = run(tum, tmp_path / "a", max_time_diff=0.05, th={"max_timestamp_skew_s": 0.015})
    # skews: 0.014897, 0.015524, 0.01244
    assert codes(rep, "tum_fr1-1305031102_175304") == ("ingested", [])
    assert codes(rep, "tum_fr1-1305031102_211214") == ("quarantined", ["timestamp_skew"])
    rep = run(tum, tmp_path / "b", max_time_diff=0.013)
    assert codes(rep, "tum_fr1-1305031102_175304") == ("quarantined", ["no_associated_depth"])
    assert codes(rep, "tum_fr1-1305031102_275326") == ("ingested", [])
    orphans = [f for f in rep["frames"] if any(r["code"] == "orphan_depth" for r in f.get("reasons", []))]
    assert len(orphans) == 2 and rep["counts"]["found"] == 5


def test_holes_range_blur_exposure(slam, tum, tmp_path):
    rep = run(tum, tmp_path / "holes", th={"max_holes": 0.1})
    assert rep["quarantine_reasons"] == {"too_many_holes": 3}
    rep = run(slam, tmp_path / "range", depth_scale=100.0)  # wrong scale: 10x too far for a Kinect
    assert set(rep["quarantine_reasons"]) == {"depth_out_of_range"}
    im = Image.open(slam / "color" / "1.png")
    im.filter(ImageFilter.GaussianBlur(12)).save(slam / "color" / "1.png")
    Image.new("RGB", im.size, (255, 255, 255)).save(slam / "color" / "2.png")
    rep = run(slam, tmp_path / "blur")
    assert codes(rep, "slam_seq-1") == ("quarantined", ["blurred"])
    assert "overexposed" in codes(rep, "slam_seq-2")[1]


def test_intrinsics_required_unless_default(slam, tmp_path):
    (slam / "camera_intrinsics.json").unlink()
    rep = run(slam, tmp_path / "a")
    assert rep["quarantine_reasons"] == {"intrinsics_missing": 2}
    rep = run(slam, tmp_path / "b", default_intrinsics=True)
    assert rep["counts"]["ingested"] == 2
    assert "default" in read_sample(tmp_path / "b", "slam_seq-1").record["camera"]["intrinsics_source"]
    (tmp_path / "k.json").write_text(json.dumps({"fx": 500, "fy": 500, "cx": 319.5, "cy": 239.5}))
    rep = run(slam, tmp_path / "c", intrinsics=tmp_path / "k.json")
    assert read_sample(tmp_path / "c", "slam_seq-1").record["camera"]["K"][0][0] == 500
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SourceError, match="bad.json"):
        ingest(slam, tmp_path / "d", IngestOptions(segment=False, intrinsics=tmp_path / "bad.json"), progress=False)


def test_reingest_with_stricter_threshold_removes_stale_sample(tum, tmp_path):
    out = tmp_path / "out"
    assert run(tum, out)["counts"]["ingested"] == 3
    rep = run(tum, out, th={"max_holes": 0.1})
    assert rep["counts"]["ingested"] == 0 and list_keys(out) == []


def test_cli_exit_codes_and_summary(tmp_path, capsys):
    assert cli_main([str(FIX / "kitti"), "--out", str(tmp_path / "a"), "--no-segmentation", "-q"]) == 0
    out = capsys.readouterr().out
    assert "found 1 frame(s): 1 ingested, 0 quarantined" in out and "ingest_report.json" in out
    assert cli_main([str(FIX / "kitti"), "--out", str(tmp_path / "b"), "--no-segmentation", "-q",
                     "--min-sharpness", "1e9"]) == 1
    assert "blurred" in capsys.readouterr().out
    assert cli_main([str(FIX / "kitti"), "--out", str(tmp_path / "c"), "--max-holes", "2"]) == 2
    with pytest.raises(SystemExit) as e:
        cli_main(["--help"])
    assert e.value.code == 0
    assert "--default-intrinsics" in capsys.readouterr().out


def test_workers_give_same_result(tum, tmp_path):
    a = run(tum, tmp_path / "a")
    b = run(tum, tmp_path / "b", workers=2)
    strip = lambda r: [(f["key"], f["status"]) for f in r["frames"]]  # noqa: E731
    assert strip(a) == strip(b)
    for k in list_keys(tmp_path / "a"):
        assert np.array_equal(read_sample(tmp_path / "a", k).depth, read_sample(tmp_path / "b", k).depth)
