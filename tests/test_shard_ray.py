"""Ray Data side of ``synthgen shard``: packing with ``synthgen shard --ray`` (the CLI, in a fresh
process on an embedded Ray cluster, as users run it) and reading the shards back with the stock
``ray.data.read_webdataset`` in another fresh process.

Every Ray run here is its own process: an in-process ``ray.init`` inherits whatever earlier tests
left in the pytest process (cached Ray config, environment), and a stalled Ray Data run would wait
for Ray's 30-minute no-progress timeout. ``RAY_DATA_EXECUTION_NO_PROGRESS_TIMEOUT_S`` caps that at
5 minutes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _shard_stores import make_real_store, make_synthetic_store
from conftest import ROOT, run_cli
from synthgen.contract import read_sample
from synthgen.shard import pack, verify

pytest.importorskip("ray")
pytest.importorskip("ray.data", reason="ray.data needs ray[data] (pandas, pyarrow)")

pytestmark = pytest.mark.slow

RAY_ENV = {"RAY_ADDRESS": "local", "RAY_DATA_EXECUTION_NO_PROGRESS_TIMEOUT_S": "300"}

READ_SCRIPT = """
import hashlib, json, sys
import numpy as np
from synthgen.raycluster import init_ray
init_ray(None, num_cpus=2)
import ray, ray.data
from synthgen.shard import decode_sample
ray.data.DataContext.get_current().enable_progress_bars = False
digest = lambda a: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
rows = ray.data.read_webdataset(sys.argv[1], file_extensions=["tar"], decoder=decode_sample).take_all()
print(json.dumps({r["__key__"]: {m: digest(np.asarray(r[m + ".exr"])) for m in ("rgb", "depth", "mask")}
                  | {"subject_id": r["json"]["subject_id"]} for r in rows}))
ray.shutdown()
"""


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    return [make_synthetic_store(root / "syn", subjects=("a", "b", "c"), per_subject=3),
            make_real_store(root / "real", sequences=("s1", "s2"), per_sequence=3)]


def test_ray_packing_matches_local_and_reads_back(stores, tmp_path):
    local = pack(stores, tmp_path / "local", split="train=0.6,val=0.4", seed=5, samples_per_shard=4, progress=False)
    res = run_cli("shard", *map(str, stores), "--out", str(tmp_path / "ray"), "--ray", "--split", "train=0.6,val=0.4",
                  "--seed", "5", "--samples-per-shard", "4", "--no-progress", env=RAY_ENV, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    on_ray = json.loads((tmp_path / "ray" / "_meta" / "manifest.json").read_text())
    assert [(e["file"], e["sha256"]) for e in on_ray["shards"]] == [(e["file"], e["sha256"]) for e in local["shards"]]
    assert verify(tmp_path / "ray", progress=False)["ok"]
    assert "--ray" in on_ray["command"]

    # the whole folder, as documented: only the .tar files are read
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"} | RAY_ENV
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    p = subprocess.run([sys.executable, "-c", READ_SCRIPT, str(tmp_path / "ray")], capture_output=True, text=True,
                       timeout=900, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-4000:]
    rows = json.loads(p.stdout.strip().splitlines()[-1])
    src = {q.name[:-5]: s for s in stores for q in Path(s).glob("*.json")}
    assert sorted(rows) == sorted(src)
    for key, r in rows.items():
        ref = read_sample(src[key], key)
        assert r == {"rgb": _digest(ref.rgb), "depth": _digest(ref.depth), "mask": _digest(ref.mask),
                     "subject_id": ref.record["subject_id"]}, key


def test_ray_packing_reports_bad_member(stores, tmp_path):
    bad = tmp_path / "syn"
    shutil.copytree(stores[0], bad)
    key = sorted(p.name[:-5] for p in bad.glob("*.json"))[2]
    p = bad / f"{key}.rgb.exr"
    data = bytearray(p.read_bytes())
    data[-5] ^= 0xFF
    p.write_bytes(bytes(data))
    res = run_cli("shard", str(bad), "--out", str(tmp_path / "out"), "--ray", "--split", "train=1",
                  "--samples-per-shard", "3", "--no-progress", env=RAY_ENV, timeout=900)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-4000:]
    assert key in res.stderr and "Traceback" not in res.stderr
    assert not list((tmp_path / "out").glob(".tmp-*"))
