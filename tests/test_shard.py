"""Tests of ``synthgen shard``: real stores (real OpenEXR files via synthgen.contract), real tar
shards read back with the stock ``webdataset`` library. Ray Data is tested in test_shard_ray.py."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from _shard_stores import make_real_store, make_synthetic_store
from synthgen.cli import main
from synthgen.contract import member_path, read_sample
from synthgen.shard import PROGRESS, ShardInputError, decode, decode_sample, pack, verify
from synthgen.shard.codec import depth_to_mm16, mask_to_8bit, rgb_to_8bit, view_transform
from synthgen.shard.plan import Item, ShardPlan, make_plan, parse_mix, parse_splits
from synthgen.shard.write import write_shard

SPLIT = "train=0.6,val=0.2,test=0.2"


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    syn = make_synthetic_store(root / "syn")
    real = make_real_store(root / "real")
    return [syn, real]


def _pack(stores, out, **kw):
    kw.setdefault("split", SPLIT)
    kw.setdefault("seed", 3)
    kw.setdefault("samples_per_shard", 5)
    kw.setdefault("progress", False)
    return pack(stores, out, **kw)


@pytest.fixture(scope="module")
def packed(stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("packed") / "ds"
    return out, _pack(stores, out)


def _all_keys(stores):
    return {p.name[:-5]: s for s in stores for p in Path(s).glob("*.json")}


def _read_wds(out, manifest):
    urls = [str(out / e["file"]) for e in manifest["shards"]]
    return list(wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode(decode))


# ----------------------------------------------------------------------------- round trip

def test_round_trip_through_stock_webdataset(stores, packed):
    out, manifest = packed
    samples = _read_wds(out, manifest)
    keys = [s["__key__"] for s in samples]
    src = _all_keys(stores)
    assert sorted(keys) == sorted(src), "every key exactly once"
    assert len(keys) == len(set(keys))
    for s in samples:
        ref = read_sample(src[s["__key__"]], s["__key__"])
        assert s["rgb.exr"].dtype == np.float32 and s["rgb.exr"].shape == (16, 16, 3)
        np.testing.assert_array_equal(s["rgb.exr"], ref.rgb)
        np.testing.assert_array_equal(s["depth.exr"], ref.depth)
        np.testing.assert_array_equal(s["mask.exr"], ref.mask)
        assert s["json"] == ref.record
    # members of a sample are next to each other, in contract order
    with tarfile.open(out / manifest["shards"][0]["file"]) as tar:
        names = tar.getnames()
    first = names[0].split(".")[0]
    assert names[:4] == [f"{first}.rgb.exr", f"{first}.depth.exr", f"{first}.mask.exr", f"{first}.json"]


def test_decode_sample_hook_on_raw_webdataset(packed):
    out, manifest = packed
    raw = next(iter(wds.WebDataset(str(out / manifest["shards"][0]["file"]), shardshuffle=False)))
    dec = decode_sample(raw)
    assert dec["depth.exr"].shape == (16, 16) and dec["depth.exr"].dtype == np.float32
    assert isinstance(dec["json"], dict) and dec["__key__"] == raw["__key__"]


def test_manifest_and_wids_lists(stores, packed):
    out, m = packed
    assert m["totals"]["samples"] == 28 and m["totals"]["by_source"] == {"synthetic": 16, "real": 12}
    assert sum(s["samples"] for s in m["splits"].values()) == 28
    for e in m["shards"]:
        p = out / e["file"]
        assert p.stat().st_size == e["bytes"]
        assert e["file"] == f"{e['split']}-{e['index']:06d}.tar"
        assert e["count"] <= 5
    assert [i["path"] for i in m["inputs"]] == [str(Path(s).resolve()) for s in stores]
    assert m["command"].startswith("synthgen shard ") and "--seed 3" in m["command"]
    for split, st in m["splits"].items():
        wl = json.loads((out / "_meta" / f"{split}.wids.json").read_text())
        assert wl["__kind__"] == "wids-shard-index-v1" and wl["wids_version"] == 1
        shards = [e for e in m["shards"] if e["split"] == split]
        assert [x["url"] for x in wl["shardlist"]] == ["../" + e["file"] for e in shards]
        assert sum(x["nsamples"] for x in wl["shardlist"]) == st["samples"]
        assert sum(sum(v.values()) for v in st["subjects"].values()) == st["samples"]
        assert st["by_source"]["synthetic"] + st["by_source"]["real"] == st["samples"]
    lines = (out / "_meta" / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 28
    row = json.loads(lines[0])
    assert {"key", "split", "shard", "store", "source", "subject_id", "record_sha256", "record"} <= set(row)
    assert not (out / PROGRESS).exists()


# ----------------------------------------------------------------------------- leakage

def test_no_subject_crosses_splits(stores, packed):
    out, m = packed
    splits_of = defaultdict(set)
    for e in m["shards"]:
        for s in wds.WebDataset(str(out / e["file"]), shardshuffle=False).decode():
            splits_of[s["json"]["subject_id"]].add(e["split"])
    assert len(splits_of) == 7
    assert all(len(v) == 1 for v in splits_of.values()), dict(splits_of)
    subj = [set(st["subjects"]) for st in m["splits"].values()]
    assert all(a.isdisjoint(b) for i, a in enumerate(subj) for b in subj[i + 1:])
    # and for other seeds / split layouts, straight from the planner
    for seed in range(6):
        plan = make_plan([str(s) for s in stores], parse_splits("train=0.5,val=0.25,test=0.25"),
                         parse_mix(None, ["train", "val", "test"]), seed, {"name": "exr"}, None, 3, progress=False)
        owner = {}
        for split, items in plan.by_split.items():
            assert items, f"seed {seed}: split {split} empty"
            for it in items:
                assert owner.setdefault(it.subject, split) == split


# ----------------------------------------------------------------------------- reproducibility

def test_reproducible_bytes(stores, packed, tmp_path):
    out, m = packed
    m2 = _pack(stores, tmp_path / "again")
    assert [(e["file"], e["sha256"]) for e in m2["shards"]] == [(e["file"], e["sha256"]) for e in m["shards"]]
    for e in m["shards"]:
        assert (out / e["file"]).read_bytes() == (tmp_path / "again" / e["file"]).read_bytes()
    with tarfile.open(out / m["shards"][0]["file"]) as tar:
        for ti in tar.getmembers():
            assert (ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname, ti.mode) == (0, 0, 0, "", "", 0o444)
    m3 = _pack(stores, tmp_path / "other_seed", seed=4)
    assert [e["sha256"] for e in m3["shards"]] != [e["sha256"] for e in m["shards"]]


# ----------------------------------------------------------------------------- verify

def test_verify_catches_flipped_byte_truncation_and_missing(packed, tmp_path, capsys):
    out0, m = packed
    out = tmp_path / "ds"
    shutil.copytree(out0, out)
    assert main(["shard", "verify", str(out), "--no-progress"]) == 0
    assert "OK:" in capsys.readouterr().out
    flipped, truncated, missing = (m["shards"][i]["file"] for i in (0, 1, 2))
    p = out / flipped
    data = bytearray(p.read_bytes())
    data[len(data) // 3] ^= 0x01  # inside member data
    p.write_bytes(bytes(data))
    q = out / truncated
    q.write_bytes(q.read_bytes()[: q.stat().st_size // 2])
    (out / missing).unlink()
    assert main(["shard", "verify", str(out), "--no-progress"]) == 1
    text = capsys.readouterr().out
    bad = {line.split()[1].rstrip(":") for line in text.splitlines() if line.startswith("BAD ")}
    assert bad == {flipped, truncated, missing}
    res = verify(out, progress=False)
    assert any("sha256" in r for r in res["bad"][flipped])
    assert any("size" in r for r in res["bad"][truncated])
    assert res["bad"][missing] == ["missing"]
    others = [e["file"] for e in m["shards"][3:]]
    assert not set(others) & set(res["bad"])


def test_verify_names_damaged_sample_and_missing_manifest(packed, tmp_path, capsys):
    out0, m = packed
    out = tmp_path / "ds"
    shutil.copytree(out0, out)
    e = m["shards"][0]
    with tarfile.open(out / e["file"]) as tar:
        ti = tar.getmembers()[1]  # first sample's depth.exr
        off = ti.offset_data + ti.size // 2
    data = bytearray((out / e["file"]).read_bytes())
    data[off] ^= 0xFF
    (out / e["file"]).write_bytes(bytes(data))
    probs = verify(out, progress=False)["bad"][e["file"]]
    assert any(ti.name.split(".")[0] in r and "depth.exr" in r for r in probs), probs
    (out / "_meta" / "manifest.json").unlink()
    assert main(["shard", "verify", str(out), "--no-progress"]) == 2
    assert "no manifest" in capsys.readouterr().err


# ----------------------------------------------------------------------------- interrupt and resume

def test_interrupt_and_resume(stores, packed, tmp_path):
    _, full = packed
    out = tmp_path / "ds"
    seen = []

    def stop_after_two(entry):
        seen.append(entry["file"])
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _pack(stores, out, on_shard=stop_after_two)
    assert not (out / "_meta" / "manifest.json").exists()
    assert sorted(p.name for p in out.glob("*.tar")) == sorted(seen)
    assert (out / PROGRESS).exists()
    before = {n: (out / n).stat() for n in seen}
    (out / ".tmp-deadbeef.tar").write_bytes(b"half a shard")  # as if killed while writing
    with open(out / PROGRESS, "a") as fh:  # ... or while appending to the journal
        fh.write('{"file": "train-0000')
    rewritten = []

    def stop_again(entry):  # a second interruption: the journal must still be readable
        rewritten.append(entry["file"])
        if len(rewritten) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _pack(stores, out, on_shard=stop_again)
    m = _pack(stores, out, on_shard=lambda e: rewritten.append(e["file"]))
    assert not set(rewritten) & set(seen), "finished shards are not rewritten"
    assert len(rewritten) == len(full["shards"]) - 2
    for n, st in before.items():
        now = (out / n).stat()
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    assert not list(out.glob(".tmp-*"))
    assert [e["sha256"] for e in m["shards"]] == [e["sha256"] for e in full["shards"]]
    assert verify(out, progress=False)["ok"]
    # a finished dataset: rerunning writes no shard
    again = []
    _pack(stores, out, on_shard=lambda e: again.append(e))
    assert again == []


def test_interrupt_inside_a_shard_leaves_no_partial_file(stores, tmp_path):
    plan = make_plan([str(s) for s in stores], {"train": 1.0}, {"train": None}, 0, {"name": "exr"}, None, 10,
                     progress=False)
    sh = plan.shards[0]
    calls = []

    def boom():
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_shard(tmp_path / sh.name, sh, plan.stores, {"name": "exr"}, on_sample=boom)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- encodings, mixing, sizes

def test_encode_train(stores, tmp_path):
    out = tmp_path / "train8"
    m = _pack(stores, out, encode="train", split="train=1")
    assert m["members"] == ["rgb.png", "depth.png", "mask.png", "json"]
    samples = _read_wds(out, m)
    src = _all_keys(stores)
    assert sorted(s["__key__"] for s in samples) == sorted(src)
    for s in samples:
        ref = read_sample(src[s["__key__"]], s["__key__"])
        assert s["rgb.png"].dtype == np.uint8 and s["rgb.png"].shape == (16, 16, 3)
        np.testing.assert_array_equal(s["rgb.png"], rgb_to_8bit(ref.rgb))
        np.testing.assert_array_equal(s["depth.png"], depth_to_mm16(ref.depth).astype(np.float32) / 1000)
        np.testing.assert_allclose(s["depth.png"], ref.depth, atol=5e-4)
        np.testing.assert_array_equal(s["mask.png"], mask_to_8bit(ref.mask) / np.float32(255))
        enc = s["json"]["encoding"]
        assert enc["depth"]["units"] == "millimetres" and enc["rgb"]["view_transform"]["tone"] == "clip"
        assert "files" not in s["json"] and "rgb.exr" in s["json"]["source_files"]
    # raw 16-bit PNG really holds millimetres
    raw = next(iter(wds.WebDataset(str(out / m["shards"][0]["file"]), shardshuffle=False)))
    from PIL import Image
    import io
    im = Image.open(io.BytesIO(raw["depth.png"]))
    assert im.mode.startswith("I;16") or im.mode == "I"
    assert verify(out, progress=False)["ok"]


def test_view_transform_documented_values():
    lin = np.array([[[0.0, 0.0031308, 0.18], [1.0, 4.0, -1.0]]], np.float32)
    v = view_transform(lin)
    np.testing.assert_allclose(v[0, 0], [0.0, 0.04045, 0.46135], atol=1e-4)  # sRGB OETF
    np.testing.assert_allclose(v[0, 1], [1.0, 1.0, 0.0], atol=1e-6)  # clipped
    np.testing.assert_allclose(view_transform(lin, exposure_ev=1.0)[0, 0, 2], view_transform(lin * 2)[0, 0, 2])
    r = view_transform(np.array([[[1.0, 3.0, 0.0]]], np.float32), tone="reinhard")  # x/(1+x)
    np.testing.assert_allclose(r[0, 0], view_transform(np.array([[[0.5, 0.75, 0.0]]], np.float32))[0, 0], atol=1e-6)
    d = depth_to_mm16(np.array([0.0, 1.2344, 70.0, np.nan, -1.0]))
    assert d.tolist() == [0, 1234, 0, 0, 0]


def test_mix_downsamples_and_records_ratio(stores, tmp_path):
    m = _pack(stores, tmp_path / "mix", split="train=0.6,val=0.4", mix=["synthetic=0.5,real=0.5", "val:real=1"])
    for split, st in m["splits"].items():
        target = st["mix"]["target"]
        n = st["samples"]
        assert st["mix"]["achieved"]["synthetic"] == pytest.approx(st["by_source"]["synthetic"] / n)
        assert abs(st["mix"]["achieved"]["real"] - target["real"]) <= 1 / n + 1e-9
    assert m["splits"]["val"]["by_source"]["synthetic"] == 0
    assert m["totals"]["samples"] + len(m["excluded"]) == 28, "every input is packed or listed as excluded"
    assert all(x["reason"].startswith("--mix") for x in m["excluded"])


def test_shard_size_in_bytes(stores, tmp_path):
    m = pack(stores, tmp_path / "bysize", split="train=1", shard_size="64KB", progress=False)
    assert len(m["shards"]) > 1
    assert all(e["bytes"] <= 64_000 + 10240 for e in m["shards"])
    assert sum(e["count"] for e in m["shards"]) == 28


def test_unfinished_sample_is_listed_as_skipped(tmp_path):
    store = make_synthetic_store(tmp_path / "s", subjects=("a", "b"), per_subject=2)
    shutil.copy(member_path(store, "syn_s7_000000", "rgb.exr"), store / "halfdone_000009.rgb.exr")
    m = pack([store], tmp_path / "out", split="train=1", progress=False)
    assert m["totals"]["samples"] == 4
    assert [s["file"] for s in m["skipped"]] == ["halfdone_000009.rgb.exr"]


# ----------------------------------------------------------------------------- bad input

def _run(capsys, *argv):
    code = main(["shard", *map(str, argv), "--no-progress"])
    return code, capsys.readouterr().err


def _copy_store(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_bad_sample_missing_member(stores, tmp_path, capsys):
    bad = _copy_store(stores[0], tmp_path / "syn")
    member_path(bad, "syn_s7_000003", "depth.exr").unlink()
    code, err = _run(capsys, bad, "--out", tmp_path / "out", "--split", "train=1")
    assert code == 2
    assert "syn_s7_000003" in err and "missing" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_bad_store_with_broken_record(stores, tmp_path, capsys):
    bad = _copy_store(stores[1], tmp_path / "real")
    member_path(bad, "real_seq01_0002", "json").write_text('{"key": "real_seq01_0002", "source": "rea')
    rec = json.loads(member_path(bad, "real_seq02_0000", "json").read_text())
    del rec["subject_id"]
    member_path(bad, "real_seq02_0000", "json").write_text(json.dumps(rec))
    code, err = _run(capsys, bad, "--out", tmp_path / "out", "--split", "train=1")
    assert code == 2
    assert "real_seq01_0002.json: broken record" in err
    assert "real_seq02_0000.json: broken record" in err and "subject_id" in err
    assert not list((tmp_path / "out").glob("*.tar")) if (tmp_path / "out").exists() else True


def test_bad_member_content_aborts_shard_without_partial_file(stores, tmp_path, capsys):
    bad = _copy_store(stores[0], tmp_path / "syn")
    p = member_path(bad, "syn_s7_000005", "mask.exr")
    data = bytearray(p.read_bytes())
    data[-10] ^= 0xFF  # same size, different bytes
    p.write_bytes(bytes(data))
    code, err = _run(capsys, bad, "--out", tmp_path / "out", "--split", "train=1", "--samples-per-shard", "4")
    assert code == 2
    assert "syn_s7_000005" in err and "sha256" in err
    out = tmp_path / "out"
    assert not list(out.glob(".tmp-*")) and not (out / "_meta" / "manifest.json").exists()
    entries = [json.loads(x) for x in (out / PROGRESS).read_text().splitlines()[1:]]
    assert sorted(p.name for p in out.glob("*.tar")) == sorted(e["file"] for e in entries)
    # --no-check-inputs packs it anyway (the user asked for speed over checking)
    assert main(["shard", str(bad), "--out", str(tmp_path / "out2"), "--split", "train=1", "--no-check-inputs",
                 "--no-progress"]) == 0


def test_unsatisfiable_split_and_mix(stores, tmp_path, capsys):
    code, err = _run(capsys, *stores, "--out", tmp_path / "o1", "--split",
                     "a=0.2,b=0.1,c=0.1,d=0.1,e=0.1,f=0.1,g=0.1,h=0.2")
    assert code == 2 and "cannot be satisfied" in err and "8 splits but only 7 subject" in err
    code, err = _run(capsys, stores[0], "--out", tmp_path / "o2", "--split", "train=1", "--mix",
                     "synthetic=0.7,real=0.3")
    assert code == 2 and "split 'train'" in err and "no real samples" in err
    code, err = _run(capsys, *stores, "--out", tmp_path / "o3", "--split", "train=0.5,val=0.4")
    assert code == 2 and "sum to 0.9" in err
    code, err = _run(capsys, *stores, "--out", tmp_path / "o4", "--mix", "synthetic=1,cgi=1")
    assert code == 2 and "unknown source" in err
    code, err = _run(capsys, *stores, "--out", tmp_path / "o5", "--mix", "dev:real=1")
    assert code == 2 and "unknown split 'dev'" in err
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 6))


def test_output_folder_with_a_different_dataset(stores, packed, tmp_path, capsys):
    out0, _ = packed
    out = tmp_path / "ds"
    shutil.copytree(out0, out)
    before = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, err = _run(capsys, *stores, "--out", out, "--split", SPLIT, "--seed", "4", "--samples-per-shard", "5")
    assert code == 2 and "different dataset" in err
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    other = tmp_path / "holiday_photos"
    other.mkdir()
    (other / "beach.jpg").write_bytes(b"\xff\xd8")
    code, err = _run(capsys, *stores, "--out", other)
    assert code == 2 and "holds no synthgen shard dataset" in err
    with pytest.raises(SystemExit) as exc:  # 'shard verify' without DIR: argparse usage error
        main(["shard", "verify"])
    assert exc.value.code == 2


def test_duplicate_keys_across_stores(stores, tmp_path):
    with pytest.raises(ShardInputError, match="occurs in"):
        pack([stores[0], stores[0]], tmp_path / "dup", split="train=1", progress=False)


def test_cli_summary(stores, tmp_path, capsys):
    code = main(["shard", *map(str, stores), "--out", str(tmp_path / "cli"), "--split", "train=0.7,val=0.3",
                 "--samples-per-shard", "8", "--seed", "1", "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "28 samples in" in text and "train" in text and "val" in text
    assert main(["shard", "verify", str(tmp_path / "cli"), "--no-progress"]) == 0


def test_decode_handler_ignores_unknown_members():
    assert decode(".txt", b"hello") is None
    assert decode(".json", b"{}") is None  # left to webdataset's own JSON handler
    it = Item("k", 0, "real", "s", 1, 1, (1, 1, 1, 1), ("a", "b", "c"), "d")
    assert ShardPlan("train-000000.tar", "train", 0, [it]).keys_sha256()


def test_encode_train_jpeg_and_float_depth(stores, tmp_path):
    from synthgen.shard.codec import encode_options

    out = tmp_path / "jpg"
    m = _pack(stores, out, encode=encode_options("train", rgb="jpeg", depth="exr", exposure_ev=-1, tone="reinhard"),
              split="train=1")
    assert m["members"] == ["rgb.jpg", "depth.exr", "mask.png", "json"]
    src = _all_keys(stores)
    for s in _read_wds(out, m):
        ref = read_sample(src[s["__key__"]], s["__key__"])
        np.testing.assert_array_equal(s["depth.exr"], ref.depth)  # float depth kept bit-exact
        want = rgb_to_8bit(ref.rgb, -1, "reinhard").astype(int)
        assert np.abs(s["rgb.jpg"].astype(int) - want).mean() < 4  # JPEG q95 4:4:4
        assert s["json"]["encoding"]["rgb"]["view_transform"] == {
            "exposure_ev": -1.0, "tone": "reinhard", "clip": [0.0, 1.0], "quantisation": "floor(255 * v + 0.5)"}


# ----------------------------------------------------------------------------- tar layout of the fast writer

def test_shard_bytes_equal_a_tarfile_archive(stores, tmp_path):
    """The hand-laid tar stream equals what tarfile's own writer makes of the same members,
    including a pax extended header for a key too long for a ustar name; sha256 and size in the
    entry describe the file; a tiny max_pending exercises the back-pressure path."""
    from synthgen.contract import write_sample
    from _shard_stores import arrays, synthetic_record

    long_store = tmp_path / "long"
    long_key = "k" * 120  # > 100 characters: needs a pax header
    write_sample(long_store, long_key, *arrays(long_key), synthetic_record("scanL", 0))
    all_stores = [str(s) for s in stores] + [str(long_store)]
    plan = make_plan(all_stores, {"train": 1.0}, {"train": None}, 5, {"name": "exr"}, None, 100, progress=False)
    sh = plan.shards[0]
    assert long_key in [it.key for it in sh.items]
    entry = write_shard(tmp_path / "out" / sh.name, sh, plan.stores, {"name": "exr"}, max_pending=1)
    got = (tmp_path / "out" / sh.name).read_bytes()

    ref = tmp_path / "ref.tar"
    with tarfile.open(ref, "w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for it in sh.items:
            for ext in ("rgb.exr", "depth.exr", "mask.exr", "json"):
                data = member_path(plan.stores[it.store], it.key, ext).read_bytes()
                ti = tarfile.TarInfo(f"{it.key}.{ext}")
                ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = len(data), 0, 0o444, 0, 0, "", ""
                tar.addfile(ti, io.BytesIO(data))
    assert got == ref.read_bytes()
    assert entry["bytes"] == len(got) and entry["sha256"] == hashlib.sha256(got).hexdigest()
    assert entry["count"] == len(sh.items) and len(got) % tarfile.RECORDSIZE == 0


def test_member_that_grew_since_the_scan_is_named(stores, tmp_path):
    bad = _copy_store(stores[0], tmp_path / "syn")
    plan = make_plan([str(bad)], {"train": 1.0}, {"train": None}, 0, {"name": "exr"}, None, 100, progress=False)
    p = member_path(bad, plan.shards[0].items[2].key, "depth.exr")
    p.write_bytes(p.read_bytes() + b"\0")
    with pytest.raises(ShardInputError, match=rf"{plan.shards[0].items[2].key}.*depth.exr changed since the scan"):
        write_shard(tmp_path / "out" / "x.tar", plan.shards[0], plan.stores, {"name": "exr"}, check_inputs=False)
    assert list((tmp_path / "out").iterdir()) == []


def test_tar_header_fast_path_equals_tarfile():
    from synthgen.shard.write import _tarinfo, tar_header

    names = ["a", "x" * 99, "x" * 100, "x" * 101, "syn_s7_000001.rgb.exr", "k" * 120 + ".json", "é.json"]
    sizes = [0, 1, 511, 512, 513, 1_000_000, 8 ** 11 - 1, 8 ** 11, 10 ** 12, 123_456_789]
    for n in names:
        for size in sizes:
            assert tar_header(n, size) == _tarinfo(n, size).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


# ----------------------------------------------------------------------------- optional members (depth_sensor.exr)

def _sensor_store(root: Path) -> Path:
    """Synthetic samples of which every other carries a ``depth_sensor.exr`` member (a noisy copy of
    the depth with holes, as the renderer's depth-sensor simulation writes it)."""
    from synthgen.contract import write_sample
    from _shard_stores import arrays, synthetic_record

    root.mkdir(parents=True)
    for i in range(8):
        key = f"sens_s7_{i:06d}"
        rgb, depth, mask = arrays(key)
        extra = None
        if i % 2 == 0:
            rng = np.random.default_rng(i)
            zs = np.round((depth + rng.normal(0, 0.002, depth.shape)) * 1000) / 1000
            extra = {"depth_sensor.exr": np.where(rng.random(depth.shape) < 0.1, 0, zs).astype(np.float32)}
        write_sample(root, key, rgb, depth, mask, synthetic_record(f"scan{i % 4}", i), extra=extra)
    return root


def test_optional_members_round_trip(stores, tmp_path):
    from synthgen.exr import read_exr
    from synthgen.shard.ray_write import _plan_from_json, _plan_to_json

    sens = _sensor_store(tmp_path / "sens")
    with_sensor = {f"sens_s7_{i:06d}" for i in range(0, 8, 2)}
    all_stores = [sens, *stores]
    out = tmp_path / "ds"
    m = _pack(all_stores, out)
    assert m["members"] == ["rgb.exr", "depth.exr", "mask.exr", "json"]
    assert m["optional_members"] == ["depth_sensor.exr"]
    assert verify(out, progress=False)["ok"]
    src = _all_keys(all_stores)
    samples = _read_wds(out, m)
    assert sorted(s["__key__"] for s in samples) == sorted(src)
    seen = 0
    for s in samples:
        k = s["__key__"]
        if k in with_sensor:
            ref = read_exr(member_path(sens, k, "depth_sensor.exr"), ["Y"])["Y"]
            assert s["depth_sensor.exr"].dtype == np.float32 and s["depth_sensor.exr"].shape == (16, 16)
            np.testing.assert_array_equal(s["depth_sensor.exr"], ref)
            assert "depth_sensor.exr" in s["json"]["files"]
            seen += 1
        else:
            assert "depth_sensor.exr" not in s
    assert seen == 4
    # member order: rgb, depth, mask, extras, json; byte-identical to the store files
    for e in m["shards"]:
        with tarfile.open(out / e["file"]) as tar:
            names = tar.getnames()
            for n in names:
                key, _, ext = n.partition(".")
                if ext == "depth_sensor.exr":
                    assert tar.extractfile(n).read() == member_path(sens, key, ext).read_bytes()
                    i = names.index(n)
                    assert names[i - 3:i + 2] == [f"{key}.rgb.exr", f"{key}.depth.exr", f"{key}.mask.exr", n,
                                                  f"{key}.json"]
    # the plan sent to Ray tasks keeps the extras
    plan = make_plan([str(sens)], {"train": 1.0}, {"train": None}, 0, {"name": "exr"}, None, 100, progress=False)
    sh = plan.shards[0]
    assert any(it.extras for it in sh.items) and _plan_from_json(_plan_to_json(sh)) == sh
    # decode_sample (Ray Data / WebDataset.map) decodes the extra member too
    urls = [str(out / e["file"]) for e in m["shards"]]
    raw = next(r for r in wds.WebDataset(urls, shardshuffle=False) if "depth_sensor.exr" in r)
    assert decode_sample(raw)["depth_sensor.exr"].dtype == np.float32

    # train encoding: the extra member is packed unchanged and checked against source_files
    out8 = tmp_path / "ds8"
    m8 = _pack([sens], out8, encode="train", split="train=1")
    assert m8["optional_members"] == ["depth_sensor.exr"] and verify(out8, progress=False)["ok"]
    got = {s["__key__"]: s for s in _read_wds(out8, m8)}
    for k in with_sensor:
        np.testing.assert_array_equal(got[k]["depth_sensor.exr"],
                                      read_exr(member_path(sens, k, "depth_sensor.exr"), ["Y"])["Y"])
        assert "depth_sensor.exr" in got[k]["json"]["source_files"]

    # QA reads the shards with their extra member (depth-sensor section)
    from synthgen.qa.cli import run_qa

    doc = run_qa([str(out)], tmp_path / "qa", progress=False, html=False)
    ok = {r["expectation_config"]["meta"]["gate"]: r["success"] for r in doc["results"]}
    assert ok["members_complete"] and ok["records_valid"] and ok["inputs_readable"]
    syn = [g for g in doc["depth_sensor"]["groups"] if g["source"] == "synthetic"]
    assert len(syn) == 1 and syn[0]["samples"] == 4
    assert not any("not a sample member" in p for p in doc["summary"]["input_problems"])


def test_optional_member_damage_is_caught(tmp_path):
    sens = _sensor_store(tmp_path / "sens")
    key = "sens_s7_000002"
    p = member_path(sens, key, "depth_sensor.exr")
    good = p.read_bytes()
    # changed content, same size: the sha256 check while packing names the member
    p.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))
    with pytest.raises(ShardInputError, match=rf"{key}.depth_sensor.exr does not match the sha256"):
        _pack([sens], tmp_path / "a", split="train=1")
    # missing: the scan names it
    p.unlink()
    with pytest.raises(ShardInputError, match=rf"{key}.depth_sensor.exr is missing"):
        _pack([sens], tmp_path / "b", split="train=1")
    p.write_bytes(good)
    # a damaged member inside a shard: verify names the sample and the member
    out = tmp_path / "c"
    m = _pack([sens], out, split="train=1", samples_per_shard=100)
    tar = out / m["shards"][0]["file"]
    data = bytearray(tar.read_bytes())
    with tarfile.open(tar) as tf:
        ti = tf.getmember(f"{key}.depth_sensor.exr")
    data[ti.offset_data + 100] ^= 0xFF
    tar.write_bytes(bytes(data))
    res = verify(out, progress=False)
    assert not res["ok"]
    assert any(f"sample {key}: depth_sensor.exr does not match the sha256 in its record" in x
               for x in res["bad"][tar.name]), res["bad"]
