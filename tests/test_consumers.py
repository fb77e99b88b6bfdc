"""Issue 13: every consumer reads the data right (dataset cards, stock readers, HF datasets, resize,
exports, friendlier runs). Real libraries where they install: webdataset, Ray Data, wids, PyTorch,
Hugging Face ``datasets`` (skipped when not installed)."""

from __future__ import annotations

import io
import json
import math
import os
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
import yaml

from synthgen.card import read_card_assets, write_store_card
from synthgen.contract import read_sample, write_sample
from synthgen.shard import decode, decode_sample, load_record, pack, verify
from synthgen.shard.resize import geometry

from _consumer_stores import arrays, make_capture_source, make_real, make_synthetic, synthetic_record


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("consumer_stores")
    src = make_capture_source(root / "captures")
    return make_synthetic(root / "syn"), make_real(root / "real", src)


@pytest.fixture(scope="module")
def train_shards(stores, tmp_path_factory):
    """--encode train, every sample resized to 24x20 (crop), splits train/test, synthetic + real."""
    out = tmp_path_factory.mktemp("shards") / "train8"
    m = pack(list(stores), out, split="train=0.6,test=0.4", encode="train", samples_per_shard=4,
             size="24x20", resize="crop", progress=False)
    return out, m


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def _strip_none(x):
    """Drop None values from dicts, recursively (Arrow-based readers fill absent struct fields with null)."""
    if isinstance(x, dict):
        return {k: _strip_none(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_strip_none(v) for v in x]
    return x


def _wds(out: Path, m: dict, *handlers):
    urls = [str(out / e["file"]) for e in m["shards"]]
    ds = wds.WebDataset(urls, shardshuffle=False, empty_check=False)
    return list(ds.decode(*handlers) if handlers else ds)


# ----------------------------------------------------------------------------- item 2: dataset cards

def test_shard_card_lists_the_licence_of_every_asset_used(train_shards):
    out, m = train_shards
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith((".", "_"))) == \
        sorted(e["file"] for e in m["shards"]), "only shards at the top level"
    card = (out / "_meta" / "README.md").read_text()
    fm = _front_matter(card)
    assert {"depth-estimation", "image-segmentation"} <= set(fm["task_categories"])
    assert fm["size_categories"] == ["n<1K"] and "synthetic" in fm["tags"] and "real" in fm["tags"]
    assert {"cc-by-4.0", "cc-by-3.0", "cc0-1.0"} <= set(fm["license"])
    assert [c["path"] for c in fm["configs"][0]["data_files"]] == ["train-*.tar", "test-*.tar"]
    # the assets, independently from the records inside the shards
    used = set()
    for s in _wds(out, m, decode):
        r = s["json"]
        rend, cap = r.get("render") or {}, r.get("capture") or {}
        if "scan" in rend:
            used.add(("scan", rend["scan"]["id"]))
        if "hdri" in rend:
            used.add(("hdri", rend["hdri"]["id"]))
        used |= {(f"makehuman_{a['kind']}", a["name"]) for a in (rend.get("subject") or {}).get("assets", [])}
        if cap:
            used.add(("capture", cap["source_root"]))
    listed = {(a["kind"], a["id"]): a for a in m["assets"]}
    assert set(listed) == used
    expect = {"cesium_man": "CC BY 4.0", "lee_perry_smith": "CC BY 3.0", "studio_small_03_1k": "CC0",
              "hm08": "CC0-1.0", "short02": "CC0-1.0"}
    for (kind, ident), a in listed.items():
        assert a["licence"] != "unknown", a
        assert a["licence"] in card and f"`{ident}`" in card
        if ident in expect:
            assert a["licence"].startswith(expect[ident]), a
        if kind == "capture":
            assert a["licence"].startswith("CC BY 4.0") and a["attribution"] == "recorded for the tests"
    assert sum(a["samples"] for a in m["assets"] if a["kind"] == "scan") == 6
    assert "ray.data.read_webdataset" in card and 'load_dataset("webdataset"' in card and "metres" in card
    assert verify(out, progress=False)["ok"]


def test_card_lists_only_assets_of_packed_samples_and_unknown_licences(stores, tmp_path):
    syn, real = stores
    m = pack([real], tmp_path / "real_only", split="train=1", samples_per_shard=10, progress=False)
    assert [a["kind"] for a in m["assets"]] == ["capture"]
    # a capture folder without attribution: listed as unknown, flagged in the card
    bare = tmp_path / "bare_src"
    bare.mkdir()
    st = make_real(tmp_path / "bare_store", bare, sequences=("seqZ",), per=1)
    m2 = pack([st], tmp_path / "bare_shards", split="train=1", progress=False)
    assert m2["assets"][0]["licence"] == "unknown"
    assert "without a known licence" in (tmp_path / "bare_shards" / "_meta" / "README.md").read_text()


def test_store_card_and_qa_shows_it(stores, tmp_path):
    syn, _ = stores
    path = write_store_card(syn)
    assert path == syn / "README.md"
    fm = _front_matter(path.read_text())
    assert "cc-by-4.0" in fm["license"] and fm["task_categories"][0] == "depth-estimation"
    assets = json.loads((syn / "_meta" / "assets.json").read_text())["assets"]
    assert {a["id"] for a in assets} >= {"cesium_man", "lee_perry_smith", "studio_small_03_1k", "hm08"}
    assert read_card_assets(syn)["card"] == str(path)
    from synthgen.qa.cli import print_summary, run_qa

    doc = run_qa([str(syn)], tmp_path / "qa", progress=False, html=True)
    card = doc["summary"]["inputs"][0]["dataset_card"]
    assert card["card"] == str(path) and len(card["assets"]) == len(assets)
    assert not any(p.endswith("README.md") for p in doc["summary"]["ignored_files"])
    assert "CC BY 3.0" in (tmp_path / "qa" / "report.html").read_text()
    buf = io.StringIO()
    print_summary(doc, tmp_path / "qa", stream=buf)
    assert "asset(s): cc-by-3.0 x1, cc-by-4.0 x1, cc0-1.0 x3" in buf.getvalue()


# ----------------------------------------------------------------------------- item 3: stock readers

def test_webdataset_image_decoders_lose_depth_unless_synthgen_decodes_first(train_shards):
    out, m = train_shards
    raw = _wds(out, m)[0]
    good = decode_sample(raw)
    assert good["depth.png"].dtype == np.float32 and good["depth.png"].max() > 0.5   # metres
    for arr in good.values():
        if isinstance(arr, np.ndarray):
            assert arr.flags.writeable
    lossy = _wds(out, m, "rgb8")[0]["depth.png"]          # webdataset's built-in image decoder alone
    assert lossy.dtype == np.uint8 and lossy.max() == 255   # 16-bit millimetres clipped to 8 bits, no error
    with pytest.raises(ValueError, match="8-bit"):
        decode_sample({"depth.png": lossy[..., 0]})
    ok = _wds(out, m, decode, "rgb8")[0]                    # synthgen's handler first: exact
    np.testing.assert_array_equal(ok["depth.png"], good["depth.png"])
    assert isinstance(ok["json"], dict) and ok["json"]["key"] == raw["__key__"]


def test_decode_sample_accepts_every_reader_shape(train_shards):
    from PIL import Image

    out, m = train_shards
    raw = _wds(out, m)[0]
    ref = decode_sample(raw)
    shapes = {
        "bytesio": {k: (io.BytesIO(v) if isinstance(v, bytes) else v) for k, v in raw.items()},      # wids
        "pil": {k: (Image.open(io.BytesIO(v)) if k.endswith("png") else v) for k, v in raw.items()},  # wids, HF
        "hf_dict": {k: ({"bytes": v, "path": None} if k.endswith("png") else v) for k, v in raw.items()},
        "numpy": {k: (np.asarray(Image.open(io.BytesIO(v))) if k.endswith("png") else v)            # Ray default
                  for k, v in raw.items()},
        "json_str": {**raw, "json": json.loads(raw["json"])},
        "dotted": {("." + k if not k.startswith("__") else k): v for k, v in raw.items()},
    }
    for name, sample in shapes.items():
        got = decode_sample(sample)
        got = {k.lstrip(".") if not k.startswith("__") else k: v for k, v in got.items()}
        for k in ("rgb.png", "depth.png", "mask.png"):
            np.testing.assert_array_equal(got[k], ref[k], err_msg=name)
            assert got[k].flags.writeable, (name, k)
        assert got["json"] == ref["json"], name


def test_wids_lists_resolve_from_meta(train_shards):
    wids = pytest.importorskip("wids")
    out, m = train_shards
    ds = wids.ShardListDataset(str(out / "_meta" / "train.wids.json"), transformations=[decode_sample])
    assert len(ds) == m["splits"]["train"]["samples"]
    by_key = {s["__key__"]: decode_sample(s) for s in _wds(out, m)}
    for i in range(len(ds)):
        s = ds[i]
        ref = by_key[s["__key__"]]
        np.testing.assert_array_equal(s[".depth.png"], ref["depth.png"])
        assert s[".json"] == ref["json"]
    ds_pil = wids.ShardListDataset(str(out / "_meta" / "test.wids.json"))  # wids' default: PIL images
    s = decode_sample(ds_pil[0])
    np.testing.assert_array_equal(s[".depth.png"], by_key[s["__key__"]]["depth.png"])


RAY_SCRIPT = """
import hashlib, json, sys
import numpy as np
import ray                                    # imported first, as synthgen's render driver does
from synthgen.runtime import quiet_local_ray_auth
quiet_local_ray_auth(None)                    # before ray.init: the embedded cluster keeps token auth, quietly
from synthgen.raycluster import init_ray
init_ray(None, num_cpus=1)
import ray, ray.data
from ray._raylet import AuthenticationMode, get_authentication_mode
from synthgen.shard import decode_sample, load_record
ray.data.DataContext.get_current().enable_progress_bars = False
digest = lambda a: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
rows = ray.data.read_webdataset(sys.argv[1], decoder=decode_sample).take_all()   # stock call, no file_extensions
rows2 = ray.data.read_webdataset(sys.argv[1]).map(decode_sample).take(3)          # Ray's default decoder first
print(json.dumps({"token_auth": get_authentication_mode() == AuthenticationMode.TOKEN,
                  "rows": {r["__key__"]: {"depth": digest(r["depth.png"]), "json": load_record(r["json"])} for r in rows},
                  "rows2": {r["__key__"]: digest(r["depth.png"]) for r in rows2}}))
ray.shutdown()
"""


@pytest.fixture(scope="module")
def ray_run(train_shards):
    """One embedded Ray cluster in a fresh process, started the way synthgen starts it, without
    RAY_AUTH_MODE in the environment; reads the shard folder with the stock Ray Data call."""
    import subprocess
    import sys

    pytest.importorskip("ray")
    out, _ = train_shards
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")])
    p = subprocess.run([sys.executable, "-c", RAY_SCRIPT, str(out)], capture_output=True, text=True, timeout=400,
                       env=env, cwd=out.parent)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


def test_ray_read_webdataset_stock_call_on_the_folder(train_shards, ray_run):
    import hashlib

    out, m = train_shards
    res, _ = ray_run
    by_key = {s["__key__"]: decode_sample(s) for s in _wds(out, m)}
    assert sorted(res["rows"]) == sorted(by_key) and len(res["rows"]) == m["totals"]["samples"]
    for key, r in res["rows"].items():
        assert r["depth"] == hashlib.sha256(by_key[key]["depth.png"].tobytes()).hexdigest()
        assert _strip_none(r["json"]) == _strip_none(by_key[key]["json"])
    for key, d in res["rows2"].items():
        assert d == hashlib.sha256(by_key[key]["depth.png"].tobytes()).hexdigest()


# ----------------------------------------------------------------------------- item 4: HF datasets

def test_records_share_one_arrow_type_in_train_shards(train_shards):
    import pyarrow as pa

    out, m = train_shards
    samples = _wds(out, m, "pil")   # webdataset's stock JSON handler
    assert {s["json"]["source"] if isinstance(s["json"], dict) else load_record(s["json"])["source"]
            for s in samples} == {"synthetic", "real"}
    assert all(isinstance(s["json"], str) for s in samples)
    t = pa.Table.from_pylist([{"json": s["json"]} for s in samples])
    assert t.schema.field("json").type == pa.string()
    recs = [load_record(s["json"]) for s in samples]
    assert any("render" in r for r in recs) and any("capture" in r for r in recs)


def test_hf_datasets_loads_mixed_sources_with_the_stock_call(train_shards, tmp_path):
    datasets = pytest.importorskip("datasets")
    out, m = train_shards
    files = {s: sorted(str(p) for p in out.glob(f"{s}-*.tar")) for s in m["splits"]}
    ds = datasets.load_dataset("webdataset", data_files=files, cache_dir=str(tmp_path / "hf"))
    by_key = {s["__key__"]: decode_sample(s) for s in _wds(out, m)}
    n = 0
    for split in m["splits"]:
        assert ds[split].num_rows == m["splits"][split]["samples"]
        for row in ds[split]:
            ref = by_key[row["__key__"]]
            got = decode_sample(row)
            assert got["json"] == ref["json"], "no record fields dropped"
            np.testing.assert_array_equal(got["depth.png"], ref["depth.png"])
            np.testing.assert_array_equal(got["rgb.png"], ref["rgb.png"])
            n += 1
    assert n == m["totals"]["samples"]
    srcs = {load_record(r["json"])["source"] for sp in m["splits"] for r in ds[sp]}
    assert srcs == {"synthetic", "real"}


# ----------------------------------------------------------------------------- item 5: resize

def _marker_store(root: Path, w: int, h: int, K: np.ndarray, X: np.ndarray) -> Path:
    """One sample whose mask is an anti-aliased disc around the projection of the 3D point X
    (camera frame), depth X_z inside the disc and 4 m outside."""
    u, v = (K @ X)[:2] / X[2]
    ss = 8  # supersampled coverage so the mask's centroid is the projection
    ys, xs = np.mgrid[0:h * ss, 0:w * ss]
    cx, cy = (xs + 0.5) / ss - 0.5, (ys + 0.5) / ss - 0.5
    disc = ((cx - u) ** 2 + (cy - v) ** 2 < 3.2 ** 2).reshape(h, ss, w, ss).mean(axis=(1, 3))
    depth = np.where(disc > 0.5, X[2], 4.0).astype(np.float32)
    rgb = np.repeat(disc[..., None], 3, -1).astype(np.float32)
    rec = synthetic_record("cesium_man", 0, w, h, float(K[0, 0]))
    rec["camera"]["K"] = K.tolist()
    write_sample(root, "marker_s1_000000", rgb, depth, disc.astype(np.float32), rec)
    return root


@pytest.mark.parametrize("mode,size", [("crop", (24, 20)), ("pad", (29, 29)), ("fit", (21, 33)), ("crop", (90, 61))])
def test_resize_keeps_a_3d_point_on_its_pixel(tmp_path, mode, size):
    w, h = 47, 35
    K = np.array([[41.3, 0, 22.7], [0, 40.1, 17.2], [0, 0, 1]])
    X = np.array([0.061, -0.043, 0.83])
    store = _marker_store(tmp_path / "s", w, h, K, X)
    m = pack([store], tmp_path / "o", split="train=1", encode="exr", size=f"{size[0]}x{size[1]}", resize=mode,
             progress=False)
    s = decode_sample(_wds(tmp_path / "o", m)[0])
    rec = s["json"]
    K1 = np.asarray(rec["camera"]["K"])
    assert s["rgb.exr"].shape == (size[1], size[0], 3) and rec["image"] == {"width": size[0], "height": size[1]}
    # K' is exactly the geometric map of K (pixel-centre convention)
    g = geometry(w, h, *size, mode)
    u0 = (K @ X)[:2] / X[2]
    u1 = (K1 @ X)[:2] / X[2]
    np.testing.assert_allclose(u1, g.map_points(u0), atol=1e-9)
    tr = rec["transform"]
    assert tr["mode"] == mode and tr["from"] == {"width": w, "height": h} and np.allclose(tr["K_before"], K)
    # the marker (area-averaged mask) is where K' projects the point: within 0.5 px
    mk = s["mask.exr"]
    ys, xs = np.mgrid[0:size[1], 0:size[0]]
    centroid = np.array([(mk * xs).sum(), (mk * ys).sum()]) / mk.sum()
    assert np.linalg.norm(centroid - u1) < 0.5, (centroid, u1)
    # depth (nearest) at the projected pixel is the point's depth, never a blend
    assert s["depth.exr"][int(round(u1[1])), int(round(u1[0]))] == pytest.approx(X[2], abs=1e-6)
    assert set(np.unique(s["depth.exr"])) <= {np.float32(X[2]), np.float32(4.0), np.float32(0.0)}
    # the EXR header carries the new K too; verify accepts the re-encoded members
    hdr = read_exr_header(tmp_path / "o", m)
    np.testing.assert_allclose(hdr, K1, rtol=1e-6)
    assert verify(tmp_path / "o", progress=False)["ok"]


def read_exr_header(out: Path, m: dict) -> np.ndarray:
    import OpenEXR

    with tarfile.open(out / m["shards"][0]["file"]) as tar:
        data = next(tar.extractfile(t).read() for t in tar if t.name.endswith(".depth.exr"))
    with OpenEXR.File(io.BytesIO(data)) as f:
        return np.asarray(f.header()["intrinsicsK"], np.float64)


def test_mixed_sizes_collate_after_resize(train_shards, stores):
    torch = pytest.importorskip("torch")
    from torch.utils.data import default_collate

    out, m = train_shards
    sizes = {read_sample(st, k).rgb.shape[:2] for st in stores for k in (p.name[:-5] for p in st.glob("*.json"))}
    assert len(sizes) == 3, "the inputs really have mixed sizes"
    samples = _wds(out, m, decode)
    batch = default_collate([(s["rgb.png"], s["depth.png"], s["mask.png"]) for s in samples])
    assert tuple(batch[0].shape) == (len(samples), 20, 24, 3) and batch[1].dtype == torch.float32
    for s in samples:
        tr = s["json"]["transform"]
        K = np.asarray(s["json"]["camera"]["K"])
        g = geometry(tr["from"]["width"], tr["from"]["height"], 24, 20, "crop")
        np.testing.assert_allclose(K, g.K(tr["K_before"]), atol=1e-9)
        assert math.isclose(s["json"]["camera"]["fov_x_deg"],
                            math.degrees(math.atan((K[0, 2] + 0.5) / K[0, 0]) + math.atan((23.5 - K[0, 2]) / K[0, 0])))


def test_resize_options_are_checked(stores, tmp_path):
    from synthgen.errors import ShardInputError

    for size, mode in (("24", "zoom"), ("0x3", "crop"), ("axb", None), (None, "pad")):
        with pytest.raises(ShardInputError):
            pack([stores[1]], tmp_path / "x", split="train=1", size=size, resize=mode, progress=False)
    assert not (tmp_path / "x").exists()
    from synthgen.cli import main

    assert main(["shard", str(stores[1]), "--out", str(tmp_path / "c"), "--split", "train=1", "--size", "20x16",
                 "--resize", "pad", "--no-progress"]) == 0
    m = json.loads((tmp_path / "c" / "_meta" / "manifest.json").read_text())
    assert m["options"]["encode"]["resize"] == {"width": 20, "height": 16, "mode": "pad"}
    assert "--size 20x16 --resize pad" in m["command"]


# ----------------------------------------------------------------------------- item 6: exports

def test_diode_export_reads_back_exactly_with_synthgen_ingest(stores, tmp_path):
    from synthgen.colour import rgb_to_8bit
    from synthgen.export import export
    from synthgen.ingest import ingest
    from synthgen.ingest.options import IngestOptions, Thresholds
    from synthgen.store import list_keys

    syn, real = stores
    out = tmp_path / "diode"
    doc = export(real, out, "diode", progress=False)
    assert doc["samples"] == 6 and (out / "ATTRIBUTION.md").read_text().count("CC BY 4.0") >= 1
    # portraits: the Keras example's log-depth floor (1.105 m) would flatten them
    assert doc["warnings"] and "1.105 m" in doc["warnings"][0] and "keras" in doc["warnings"][0].lower()
    # Keras-style listing (os.walk, sorted, filtered by suffix) pairs image, depth and mask
    files = sorted(str(p) for p in out.rglob("*") if p.is_file() and "_meta" not in p.parts)
    img = [f for f in files if f.endswith(".png")]
    dep = [f for f in files if f.endswith("_depth.npy")]
    msk = [f for f in files if f.endswith("_depth_mask.npy")]
    assert len(img) == len(dep) == len(msk) == 6
    assert all(a[:-4] == b[:-len("_depth.npy")] == c[:-len("_depth_mask.npy")] for a, b, c in zip(img, dep, msk))
    assert np.load(dep[0]).shape[-1] == 1 and np.load(dep[0]).dtype == np.float32
    # synthgen ingest --format diode reads each exported sample back exactly (intrinsics.json per folder:
    # ingest takes intrinsics from the source root, so each sample folder is one source)
    opts = IngestOptions(format="diode", segment=False, thresholds=Thresholds(max_holes=1.0))
    for entry in doc["samples_listing"][:2]:
        st = tmp_path / "back" / entry["key"]
        rep = ingest(out / entry["folder"], st, opts, progress=False)
        (k,) = list_keys(st)
        got, ref = read_sample(st, k), read_sample(real, entry["key"])
        np.testing.assert_array_equal(got.depth, ref.depth)
        np.testing.assert_array_equal(got.K, ref.K)
        np.testing.assert_array_equal(rgb_to_8bit(got.rgb), rgb_to_8bit(ref.rgb))
        assert got.record["source"] == "real", rep


def test_keras_warning_only_for_near_depth():
    from synthgen.export import keras_clip_report, keras_warning

    far = np.full((8, 8), 2.5, np.float32)
    far[0] = 0
    assert keras_warning([keras_clip_report(far)]) is None
    near = np.full((8, 8), 0.7, np.float32)
    r = keras_clip_report(near)
    assert r["below"] == 1.0 and r["flat"] == 1.0 and keras_warning([r])


def test_npz_export_of_shards(stores, tmp_path):
    from synthgen.export import export

    syn, real = stores
    shards = tmp_path / "s"
    pack([syn, real], shards, split="train=0.6,test=0.4", samples_per_shard=5, progress=False)
    doc = export(shards, tmp_path / "npz", "npz", progress=False)
    assert doc["samples"] == 15 and not doc["warnings"] and set(doc["by_split"]) == {"train", "test"}
    src = {p.name[:-5]: st for st in stores for p in st.glob("*.json")}
    for entry in doc["samples_listing"]:
        z = np.load(tmp_path / "npz" / entry["file"])
        ref = read_sample(src[entry["key"]], entry["key"])
        np.testing.assert_array_equal(z["rgb_linear"], ref.rgb)
        np.testing.assert_array_equal(z["depth"], ref.depth)
        np.testing.assert_array_equal(z["mask"], ref.mask)
        np.testing.assert_array_equal(z["K"], ref.K)
        assert json.loads(str(z["record"])) == ref.record
        assert ("camera_to_world" in z.files) == (ref.camera_to_world is not None)


def test_export_cli_and_bad_input(stores, tmp_path, capsys):
    from synthgen.cli import main

    assert main(["export", str(stores[1]), "--to", "npz", "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    assert "6 samples" in capsys.readouterr().out
    assert main(["export", str(stores[1]), "--to", "npz", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert main(["export", str(tmp_path / "nope"), "--to", "diode", "--out", str(tmp_path / "p")]) == 2
    assert "not a folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------- item 7: friendlier runs

def test_quiet_local_ray_auth_keeps_token_auth(monkeypatch):
    from synthgen.runtime import quiet_local_ray_auth

    for var in ("RAY_AUTH_MODE", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    assert not quiet_local_ray_auth("ray://head:10001") and "RAY_AUTH_MODE" not in os.environ  # remote: untouched
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert not quiet_local_ray_auth(None) and "RAY_AUTH_MODE" not in os.environ
    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert not quiet_local_ray_auth(None) and os.environ["RAY_AUTH_MODE"] == "disabled"          # user's choice
    monkeypatch.delenv("RAY_AUTH_MODE")
    try:
        assert quiet_local_ray_auth(None) and os.environ["RAY_AUTH_MODE"] == "token"
    finally:
        # the call also refreshed Ray's cached config in this (pytest) process: refresh it again once
        # the environment is back, or a later in-process ray.init would start a cluster whose
        # processes disagree with this one on token auth (under CI's RAY_AUTH_MODE=disabled its
        # Ray Data tasks then never ran)
        monkeypatch.undo()
        if "ray._raylet" in sys.modules:
            from ray._raylet import Config

            Config.initialize("")


def test_embedded_cluster_starts_without_the_auth_warning_and_with_token_auth(ray_run):
    res, stderr = ray_run   # the embedded cluster of the Ray Data test, started without RAY_AUTH_MODE
    assert res["token_auth"] is True
    assert "Token authentication is" not in stderr, stderr[-2000:]


def test_dry_run_estimate_from_a_measured_store_and_builtin(tmp_path):
    from synthgen.runtime import CURVES, estimate_render, format_estimate

    def ratio(c, x, x0):
        return (CURVES[c][0] + CURVES[c][1] * x) / (CURVES[c][0] + CURVES[c][1] * x0)

    ref = tmp_path / "ref"
    (ref / "_meta").mkdir(parents=True)
    write_sample(ref, "a_s0_000000", *arrays("a", 32, 32), synthetic_record("cesium_man", 0, 32, 32, 30.0))
    (ref / "_meta" / "run.json").write_text(json.dumps({
        "written": 4, "wall_s": 20.0, "workers": 2, "threads_per_worker": 1,
        "timings": {"setup_s": 4.0, "render_s": 16.0, "write_s": 4.0}}))
    (ref / "_meta" / "store.json").write_text(json.dumps({"config": {"render": {"width": 32, "height": 32,
                                                                                  "samples": 4}}}))
    cfg = {"num_samples": 100, "render": {"width": 64, "height": 64, "samples": 8, "threads_per_worker": 1}}
    est = estimate_render(cfg, tmp_path / "new_out", references=[ref], cpus=4)
    # per sample: setup 1 + render 4 and write 1 scaled by the curves; 4 workers; startup 20 - 24/2 = 8
    per = 1 + 4 * ratio("render", 64 * 64 * 8, 32 * 32 * 4) + 1 * ratio("write", 64 * 64, 32 * 32)
    assert est["workers"] == 4 and est["per_sample_s"] == pytest.approx(per)
    assert est["seconds"] == pytest.approx(8 + 100 * per / 4)
    per_sample_bytes = sum(p.stat().st_size for p in ref.glob("a_*"))
    assert est["bytes"] == pytest.approx(100 * per_sample_bytes * ratio("bytes", 64 * 64, 32 * 32), rel=1e-6)
    assert str(ref) in est["method"] and "measured" in format_estimate(est)
    est2 = estimate_render(cfg, None, cpus=2)
    assert "built-in" in est2["method"] and est2["seconds"] > 0 and "# estimate:" in format_estimate(est2)
