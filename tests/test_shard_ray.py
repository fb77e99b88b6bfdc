"""Ray Data side of ``synthgen shard``: packing with ``--ray`` and reading shards back with the stock
``ray.data.read_webdataset``. One local Ray instance is shared by the module (startup is slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _shard_stores import make_real_store, make_synthetic_store
from synthgen.contract import read_sample
from synthgen.shard import ShardInputError, decode_sample, pack, verify

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data", reason="ray.data needs ray[data] (pandas, pyarrow)")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local():
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")  # never a leftover cluster
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    return [make_synthetic_store(root / "syn", subjects=("a", "b", "c"), per_subject=3),
            make_real_store(root / "real", sequences=("s1", "s2"), per_sequence=3)]


def test_ray_packing_matches_local_and_reads_back(ray_local, stores, tmp_path):
    kw = dict(split="train=0.6,val=0.4", seed=5, samples_per_shard=4, progress=False)
    local = pack(stores, tmp_path / "local", **kw)
    on_ray = pack(stores, tmp_path / "ray", engine="ray", **kw)
    assert [(e["file"], e["sha256"]) for e in on_ray["shards"]] == [(e["file"], e["sha256"]) for e in local["shards"]]
    assert verify(tmp_path / "ray", progress=False)["ok"]
    assert "--ray" in on_ray["command"]

    # the whole folder, as documented: only the .tar files are read
    rows = ray.data.read_webdataset(str(tmp_path / "ray"), file_extensions=["tar"],
                                    decoder=decode_sample).take_all()
    keys = [r["__key__"] for r in rows]
    src = {p.name[:-5]: s for s in stores for p in Path(s).glob("*.json")}
    assert sorted(keys) == sorted(src) and len(set(keys)) == len(keys)
    for r in rows:
        ref = read_sample(src[r["__key__"]], r["__key__"])
        np.testing.assert_array_equal(np.asarray(r["rgb.exr"]), ref.rgb)
        np.testing.assert_array_equal(np.asarray(r["depth.exr"]), ref.depth)
        np.testing.assert_array_equal(np.asarray(r["mask.exr"]), ref.mask)
        assert r["json"]["subject_id"] == ref.record["subject_id"]


def test_ray_packing_reports_bad_member(ray_local, stores, tmp_path):
    import shutil

    bad = tmp_path / "syn"
    shutil.copytree(stores[0], bad)
    key = sorted(p.name[:-5] for p in bad.glob("*.json"))[2]
    p = bad / f"{key}.rgb.exr"
    data = bytearray(p.read_bytes())
    data[-5] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ShardInputError, match=key):
        pack([bad], tmp_path / "out", split="train=1", samples_per_shard=3, engine="ray", progress=False)
    assert not list((tmp_path / "out").glob(".tmp-*"))
