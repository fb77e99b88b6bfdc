"""``synthgen shard`` on a real Blender-rendered store (the shared smoke store), through the
installed console script, then ``synthgen shard verify`` and a stock webdataset read-back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import webdataset as wds

from conftest import run_cli
from synthgen.contract import list_keys, read_sample
from synthgen.shard import decode
from synthgen.shard.codec import rgb_to_8bit

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("encode", ["exr", "train"])
def test_shard_rendered_store_via_cli(smoke_store, tmp_path, encode):
    out = tmp_path / f"ds_{encode}"
    res = run_cli("shard", str(smoke_store), "--out", str(out), "--split", "train=1", "--encode", encode,
                  "--samples-per-shard", "3", "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "samples in" in res.stdout
    res = run_cli("shard", "verify", str(out), "--no-progress")
    assert res.returncode == 0 and res.stdout.startswith("OK:"), res.stdout + res.stderr
    m = json.loads((out / "_meta" / "manifest.json").read_text())
    urls = [str(out / e["file"]) for e in m["shards"]]
    got = {s["__key__"]: s for s in wds.WebDataset(urls, shardshuffle=False).decode(decode)}
    assert sorted(got) == list_keys(smoke_store)
    for key, s in got.items():
        ref = read_sample(smoke_store, key)
        if encode == "exr":
            np.testing.assert_array_equal(s["depth.exr"], ref.depth)
        else:
            np.testing.assert_array_equal(s["rgb.png"], rgb_to_8bit(ref.rgb))
            valid = ref.depth > 0
            assert np.all((s["depth.png"] > 0) == valid)
            np.testing.assert_allclose(s["depth.png"][valid], ref.depth[valid], atol=5e-4)
        assert s["json"]["subject_id"] == ref.record["subject_id"]
