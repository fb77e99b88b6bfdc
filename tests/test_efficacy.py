"""``synthgen efficacy``: metrics by hand, loaders, and tiny end-to-end runs through the real CLI.

End-to-end data: a 4-sample smoke render (48x48, two subjects) through ``synthgen render`` as the
training store, and two real iPhone TrueDepth portraits of a person (tests/fixtures/efficacy; ingest reads
metric front-camera depth, or finds no confident person and writes an empty mask) ingested through
``synthgen ingest`` as an evaluation store, plus two photos with relative 8-bit depth
(tests/fixtures/ingest/image_depth_pairs) as a second one. The tests that train need PyTorch
(``pip install 'synthgen[train]'``) and are skipped, saying so, when it is not importable.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synthgen.efficacy.data import Item, fit_square, load_source, split_by_subject
from synthgen.efficacy.metrics import depth_metrics, ellipsoid_depth, lsq_log_fit, rankdata, region_mask, spearman

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "configs" / "smoke.yaml"
FIXTURE = ROOT / "tests" / "fixtures" / "efficacy" / "iphone_truedepth_person"
PAIRS = ROOT / "tests" / "fixtures" / "ingest" / "image_depth_pairs"
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed (pip install 'synthgen[train]'); "
                                                       "the efficacy training tests need it")


def cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """The real CLI in a fresh process (``python -m synthgen.cli`` from the repository root)."""
    # RAY_ADDRESS=local: start a private Ray instance even when another one's address is on record
    # (/tmp/ray/ray_current_cluster), which ray.init() would otherwise try to join
    e = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1", RAY_ADDRESS="local")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "synthgen.cli", *args], check=False, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=e)


# ----------------------------------------------------------------------------- metrics by hand

def test_metrics_match_hand_computed_values():
    g = np.array([1.0, 2.0, 4.0])
    # pred = g^2: median scaling 2/4 -> [0.5, 2, 8]; ratios 2, 1, 2
    m = depth_metrics(g ** 2, g, metric=True)
    assert m["abs_rel_median"] == pytest.approx((0.5 / 1 + 0 + 4 / 4) / 3)
    assert m["delta1_median"] == pytest.approx(1 / 3)
    # log g = 0.5 log p + 0 exactly: the log-space fit undoes the power
    assert lsq_log_fit(g ** 2, g) == pytest.approx((0.5, 0.0), abs=1e-12)
    assert m["abs_rel_lsq"] == pytest.approx(0.0, abs=1e-12)
    assert m["delta1_lsq"] == 1.0
    # d = log p - log g = log g = [0, l, 2l]: variance (0 + l^2 + 4 l^2)/3 - l^2 = 2/3 l^2
    assert m["silog"] == pytest.approx(math.log(2) * math.sqrt(2 / 3))
    assert m["spearman"] == pytest.approx(1.0)
    assert m["abs_rel_raw"] == pytest.approx((0 + 2 / 2 + 12 / 4) / 3)  # |1-1|/1, |4-2|/2, |16-4|/4
    assert m["delta1_raw"] == pytest.approx(1 / 3)

    # a pure scale: every aligned metric is perfect, the raw ones are not
    m = depth_metrics(2 * g, g, metric=True)
    assert m["abs_rel_median"] == pytest.approx(0, abs=1e-12) and m["delta1_median"] == 1
    assert m["silog"] == pytest.approx(0, abs=1e-7)
    assert m["abs_rel_raw"] == pytest.approx(1.0) and m["delta1_raw"] == 0.0
    # relative truth: no raw metrics
    m = depth_metrics(2 * g, g, metric=False)
    assert m["abs_rel_raw"] is None and m["delta1_raw"] is None


def test_spearman_ties_reversal_and_self():
    # ranks [1.5, 1.5, 3, 4] vs [1, 2, 3, 4]: 4.5 / sqrt(4.5 * 5)
    assert list(rankdata(np.array([1.0, 1.0, 2.0, 3.0]))) == [1.5, 1.5, 3, 4]
    assert spearman(np.array([1.0, 1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(4.5 / math.sqrt(22.5))
    assert spearman(np.array([4.0, 3.0, 2.0, 1.0]), np.array([1.0, 2.0, 3.0, 10.0])) == pytest.approx(-1.0)
    assert spearman(np.ones(5), np.arange(1.0, 6.0)) == 0.0  # constant: defined as 0
    rng = np.random.default_rng(0)
    truth = np.round(rng.uniform(0.3, 2.0, 500), 2)  # many ties
    assert spearman(truth, truth) == pytest.approx(1.0)
    m = depth_metrics(truth, truth, metric=True)
    assert m["spearman"] == pytest.approx(1.0) and m["abs_rel_lsq"] == pytest.approx(0, abs=1e-12)


def test_constant_baseline_abs_rel_closed_form():
    rng = np.random.default_rng(1)
    g = rng.uniform(0.4, 3.0, 1001)
    m = depth_metrics(np.full_like(g, 7.0), g, metric=False)
    med = np.median(g)
    geo = math.exp(np.mean(np.log(g)))  # the log-space fit of a constant is the geometric mean
    assert m["abs_rel_median"] == pytest.approx(float(np.mean(np.abs(med - g) / g)), rel=1e-12)
    assert m["abs_rel_lsq"] == pytest.approx(float(np.mean(np.abs(geo - g) / g)), rel=1e-9)
    assert m["spearman"] == 0.0
    assert m["silog"] == pytest.approx(float(np.std(np.log(g))), rel=1e-9)


def test_region_and_ellipsoid_baseline():
    depth = np.array([[0, 1, 1], [1, 1, 1], [1, 1, 0]], np.float32)
    mask = np.array([[1, 1, 0], [1, 0.6, 0.4], [0, 0, 1]], np.float32)
    assert region_mask(depth, mask, "valid").sum() == 7
    assert region_mask(depth, mask, "mask").tolist() == [[False, True, False], [True, True, False],
                                                         [False, False, False]]
    m = np.zeros((21, 31), np.float32)
    m[5:16, 10:21] = 1  # centred at (10, 15)
    e = ellipsoid_depth(m)
    assert np.unravel_index(np.argmin(e), e.shape) == (10, 15)
    assert e.min() == pytest.approx(1.0 - 0.2) and e[0, 0] == pytest.approx(1.0)
    assert e[10, 12] < e[10, 11] < e[10, 1]  # nearer towards the middle


def test_letterbox_and_subject_split():
    rgb = np.full((10, 20, 3), 0.5, np.float32)
    depth = np.full((10, 20), 2.0, np.float32)
    mask = np.ones((10, 20), np.float32)
    rgb8, d, m, box = fit_square(rgb, depth, mask, 16)
    assert box == (4, 12, 0, 16) and rgb8.shape == (16, 16, 3) and rgb8.dtype == np.uint8
    assert (d[:4] == 0).all() and (d[12:] == 0).all() and (m[:4] == 0).all() and (rgb8[:4] == 0).all()
    assert (d[4:12] == 2.0).all() and (rgb8[4:12] == 128).all()

    def item(i, subj):
        return Item(f"k{i}", "x", subj, "synthetic", True, rgb8, d, m, box)

    items = [item(i, f"s{i % 5}") for i in range(20)]
    tr, held, subjects = split_by_subject(items, 0.4)
    assert len(subjects) == 2 and {it.subject_id for it in held} == set(subjects)
    assert not {it.subject_id for it in tr} & set(subjects) and len(tr) + len(held) == 20
    assert split_by_subject(list(reversed(items)), 0.4)[2] == subjects  # order-independent
    assert split_by_subject(items[:1], 0.4)[1] == [] and split_by_subject(items, 0)[1] == []


# ----------------------------------------------------------------------------- end to end (real CLI)

@pytest.fixture(scope="module")
def train_store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eff_train") / "store"
    res = cli("render", "--config", str(SMOKE), "--out", str(out), "--num-samples", "4", "--set", "render.width=48",
              "--set", "render.height=48", "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def real_store(tmp_path_factory) -> Path:
    """Two real portraits with MediaPipe person masks (depth metric or relative, depending on how
    ingest reads Apple's depth metadata)."""
    out = tmp_path_factory.mktemp("eff_real") / "person"
    res = cli("ingest", str(FIXTURE), "--out", str(out), "--format", "heic", "--quiet")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def relative_store(tmp_path_factory) -> Path:
    """Two real photos with relative 8-bit depth (no person: segmentation off, masks all ones)."""
    out = tmp_path_factory.mktemp("eff_rel") / "pairs"
    res = cli("ingest", str(PAIRS), "--out", str(out), "--format", "image-depth-pairs", "--no-segmentation",
              "--default-intrinsics", "--quiet")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return out


def test_shard_folder_loads_like_its_store(train_store: Path, tmp_path: Path):
    shards = tmp_path / "shards"
    res = cli("shard", str(train_store), "--out", str(shards), "--encode", "train", "--samples-per-shard", "3",
              "--split", "train=0.5,val=0.5",
              "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    a, pa = load_source(train_store, 32)
    b, pb = load_source(shards, 32)
    assert pa == [] and pb == [] and len(a) == len(b) == 4
    by_key = {it.key: it for it in b}
    for x in a:
        y = by_key[x.key]
        assert (x.subject_id, x.metric, x.box) == (y.subject_id, y.metric, y.box)
        assert np.abs(x.rgb.astype(int) - y.rgb.astype(int)).max() <= 2  # 8-bit PNG vs EXR through the view transform
        assert np.allclose(x.depth, y.depth, atol=1e-3)  # millimetre PNG
        assert np.abs(x.mask - y.mask).max() < 0.01


@needs_torch
def test_end_to_end_report_gate_and_determinism(train_store: Path, real_store: Path, relative_store: Path,
                                                 tmp_path: Path):
    out = tmp_path / "report"
    args = ["efficacy", "--train", str(train_store), "--eval", str(real_store), str(relative_store), "--out", str(out),
            "--steps", "20",
            "--size", "32", "--batch-size", "4", "--seeds", "2", "--threads", "1", "--no-progress"]
    res = cli(*args, "--min-spearman-gain", "-5")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert "Spearman gain over the best baseline" in res.stdout and "gate (>= -5.0): PASS" in res.stdout
    doc = json.loads((out / "efficacy.json").read_text())
    assert doc["format"] == "synthgen.efficacy/1" and doc["seeds"] == [0, 1]
    assert doc["environment"]["device"] == "cpu"
    assert 0.8e6 < doc["model"]["parameters"] < 1.3e6
    # two subjects: one trains, one is held back (no person in both)
    assert len(doc["data"]["held_back_subjects"]) == 1 and doc["data"]["train_subjects"]
    assert not set(doc["data"]["held_back_subjects"]) & set(doc["data"]["train_subjects"])
    assert set(doc["results"]) == {"eval", "eval/person", "eval/pairs", "held_back"}
    # every evaluation sample is scored, or skipped for too few pixels in its person mask (an ingest
    # that finds no confident person writes an empty mask)
    for store in (real_store, relative_store):
        scored = [r for r in doc["per_sample"]["eval"] if r["origin"] == str(store)]
        skipped = [s for s in doc["data"]["skipped"] if s["origin"] == str(store)]
        assert scored and len(scored) + len(skipped) == 2
        assert all(s["set"] == "eval" and "scored pixels" in s["reason"] for s in skipped)
    for name, res_set in doc["results"].items():
        assert set(res_set) == {"trained", "untrained", "constant", "ellipsoid"}
        rows = doc["per_sample"][name.split("/")[0]]
        if name.startswith("eval/"):  # one evaluation store
            rows = [r for r in rows if r["origin"] == str(real_store if name == "eval/person" else relative_store)]
        assert rows and all(r["pixels"] >= 16 for r in rows)
        for pred, r in res_set.items():
            for k in range(2):  # aggregate = mean over samples, per seed
                want = np.mean([row["metrics"][pred]["spearman"][k] for row in rows])
                assert r["per_seed"][k]["spearman"] == pytest.approx(want)
            assert r["mean"]["spearman"] == pytest.approx(np.mean([ps["spearman"] for ps in r["per_seed"]]))
            assert r["std"]["spearman"] == pytest.approx(np.std([ps["spearman"] for ps in r["per_seed"]], ddof=1))
        assert res_set["constant"]["mean"]["spearman"] == 0.0 and res_set["constant"]["std"]["abs_rel_median"] == 0.0
    # relative-depth samples get the alignment-invariant metrics only; metric ones also the raw pair
    for name in ("eval", "held_back"):
        for row in doc["per_sample"][name]:
            for pred in ("trained", "untrained", "constant", "ellipsoid"):
                raw = row["metrics"][pred]["abs_rel_raw"] + row["metrics"][pred]["delta1_raw"]
                assert all((v is None) == (not row["metric"]) for v in raw), (name, row["key"])
                assert all(v is not None for v in row["metrics"][pred]["spearman"])
    assert not any(r["metric"] for r in doc["per_sample"]["eval"] if r["origin"] == str(relative_store))
    assert doc["results"]["eval/pairs"]["trained"]["mean"]["abs_rel_raw"] is None
    assert doc["results"]["eval/pairs"]["trained"]["mean"]["spearman"] is not None
    assert all(r["metric"] for r in doc["per_sample"]["held_back"])  # synthetic renders: metric
    # the scored TrueDepth captures are metric (ingest reads Apple's absolute depth accuracy and the
    # disparity range), so the raw (unaligned) AbsRel is reported for them too
    assert all(r["metric"] for r in doc["per_sample"]["eval"] if r["origin"] == str(real_store))
    assert doc["results"]["eval/person"]["trained"]["mean"]["abs_rel_raw"] is not None
    assert doc["results"]["held_back"]["trained"]["mean"]["abs_rel_raw"] is not None
    # the constant baseline's AbsRel after median scaling is mean |median(g) - g| / g on the scored pixels
    items = {it.key: it for it in load_source(real_store, 32)[0]}
    want = []
    for row in doc["per_sample"]["eval"]:
        if row["origin"] != str(real_store):
            continue
        it = items[row["key"]]
        gt = it.depth[region_mask(it.depth, it.mask, "mask")].astype(np.float64)
        assert row["pixels"] == gt.size
        want.append(np.mean(np.abs(np.median(gt) - gt) / gt))
        assert row["metrics"]["constant"]["abs_rel_median"] == pytest.approx([want[-1]] * 2, rel=1e-9)
    assert doc["results"]["eval/person"]["constant"]["mean"]["abs_rel_median"] == pytest.approx(np.mean(want), rel=1e-9)
    for run in doc["runs"]:
        assert len(run["losses"]) == 20 and all(math.isfinite(x) for x in run["losses"])
        assert run["checkpoints"][0]["step"] == 0 and run["checkpoints"][-1]["step"] == 20
    g = doc["gate"]
    assert g["best_baseline"] in ("untrained", "constant", "ellipsoid") and g["passed"] is True
    assert g["gain"] == pytest.approx(np.mean(g["gain_per_seed"]))

    html = (out / "index.html").read_text()
    assert 'class="verdict pass"' in html and "held_back" in html and "Spearman" in html
    srcs = [s.split('"')[0] for s in html.split('<img src="')[1:]]
    assert "training_curve.png" in srcs and any(s.startswith("tiles/eval/") for s in srcs)
    for s in srcs:
        assert (out / s).is_file() and (out / s).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.rglob(".tmp-*"))

    # same run with an unreachable gate: exit 1, and the same numbers (fixed seeds, one thread)
    res2 = cli(*args, "--min-spearman-gain", "5")
    assert res2.returncode == 1, res2.stdout[-2000:] + res2.stderr[-4000:]
    doc2 = json.loads((out / "efficacy.json").read_text())
    assert doc2["gate"]["passed"] is False
    assert doc2["results"] == doc["results"] and doc2["per_sample"] == doc["per_sample"]
    assert 'class="verdict fail"' in (out / "index.html").read_text()


def test_bad_input_exits_2(tmp_path: Path):
    res = cli("efficacy", "--train", str(tmp_path / "missing"), "--eval", str(tmp_path), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "no such file or folder" in res.stderr and "Traceback" not in res.stderr
    res = cli("efficacy", "--train", str(tmp_path), "--eval", str(tmp_path), "--out", str(tmp_path / "o"),
              "--size", "40")
    assert res.returncode == 2 and "multiple of 16" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()


@needs_torch
def test_folder_without_samples_exits_2(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    res = cli("efficacy", "--train", str(tmp_path / "empty"), "--eval", str(tmp_path / "empty"), "--out",
              str(tmp_path / "o"), "--no-progress")
    assert res.returncode == 2 and "neither a sample store" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()


def test_missing_torch_exits_2_with_install_hint(tmp_path: Path):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "torch.py").write_text("raise ImportError(\"No module named 'torch' (simulated)\")\n")
    env = {"PYTHONPATH": os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")])}
    res = cli("efficacy", "--train", str(tmp_path), "--eval", str(tmp_path), "--out", str(tmp_path / "o"), env=env)
    assert res.returncode == 2
    assert "pip install 'synthgen[train]'" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
