"""End to end through the CLI on an embedded Ray cluster: smoke job, determinism, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import OpenEXR
import pytest

from synthgen.atomic import atomic_path
from synthgen.contract import ALL_MEMBERS, list_keys, read_sample, verify_sample

from conftest import SMOKE, run_cli


def test_smoke_job_writes_complete_samples(smoke_store: Path):
    keys = list_keys(smoke_store)
    assert keys == [f"smoke_s7_{i:06d}" for i in range(4)]
    scans = set()
    for key in keys:
        for m in ALL_MEMBERS:
            assert (smoke_store / f"{key}.{m}").is_file()
        assert verify_sample(smoke_store, key) == []
        with OpenEXR.File(str(smoke_store / f"{key}.rgb.exr"), separate_channels=True) as f:
            ch = f.channels()
            assert sorted(ch) == ["B", "G", "R"] and ch["R"].pixels.dtype == np.float16
            assert f.header()["compression"] == OpenEXR.ZIP_COMPRESSION
        with OpenEXR.File(str(smoke_store / f"{key}.depth.exr"), separate_channels=True) as f:
            z = f.channels()["Y"].pixels
            assert z.dtype == np.float32 and z.shape == (64, 64)
        s = read_sample(smoke_store, key)
        valid = s.depth[s.depth > 0]
        assert 0.1 < valid.min() < valid.max() < 5.0 and np.ptp(valid) > 0.02  # metres, not one value
        assert 0.05 <= s.mask.mean() <= 0.95 and np.isfinite(s.rgb).all() and s.rgb.max() > 0
        r = s.record
        assert r["source"] == "synthetic" and r["subject_id"] == r["render"]["scan"]["id"]
        for field in ("K", "camera_to_world", "focal_length_mm", "sensor_width_mm", "fov_x_deg", "fov_y_deg"):
            assert field in r["camera"]
        assert r["render"]["hdri"]["id"] and 0 <= r["render"]["hdri"]["rotation_deg"] < 360
        assert r["render"]["versions"]["blender"].startswith("4.5")
        assert r["render"]["resamples"] == len(r["render"]["rejected"])
        scans.add(r["subject_id"])
        assert (smoke_store / "_meta" / "previews" / f"{key}.png").is_file()
    assert scans == {"lee_perry_smith", "bust_man_wreath"}
    store = json.loads((smoke_store / "_meta" / "store.json").read_text())
    assert store["plan"]["num_samples"] == 4
    assert not list(smoke_store.glob(".tmp-*"))


def test_sample_rendered_alone_matches_batch(smoke_store: Path, tmp_path: Path):
    out = tmp_path / "alone"
    res = run_cli("render", "--config", str(SMOKE), "--out", str(out), "--indices", "2", "--workers", "1",
                  "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "wrote 1 samples" in res.stdout
    key = "smoke_s7_000002"
    assert list_keys(out) == [key]
    alone = json.loads((out / f"{key}.json").read_text())
    batch = json.loads((smoke_store / f"{key}.json").read_text())
    alone.pop("files"), batch.pop("files")
    assert alone == batch
    a, b = read_sample(out, key), read_sample(smoke_store, key)
    assert np.array_equal(a.depth, b.depth) and np.array_equal(a.mask, b.mask)
    assert np.allclose(a.rgb, b.rgb, atol=1e-2)


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path):
    target = tmp_path / "x.rgb.exr"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_address_joins_existing_two_node_cluster(tmp_path: Path):
    """--address connects to a running Ray cluster (two nodes on this machine) instead of starting one."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=2)  # 3 CPUs in all: more than this 2-core machine's local Ray would have
        cluster.wait_for_nodes()
        out = tmp_path / "cluster_store"
        res = run_cli("render", "--config", str(SMOKE), "--out", str(out), "--num-samples", "3",
                      "--address", cluster.address, "--no-progress")
        assert res.returncode == 0, res.stderr[-3000:]
        assert "3 worker(s)" in res.stdout  # one per CPU of the joined cluster
        assert [verify_sample(out, k) for k in list_keys(out)] == [[], [], []]
    finally:
        cluster.shutdown()
