"""synthgen ingest, issue 14 item 5: --address runs the per-frame work on Ray with the same keys,
outputs and report as the local run (a 2-node ray.cluster_utils.Cluster on this machine)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from synthgen.contract import list_keys, read_sample
from synthgen.ingest import IngestOptions, ingest
from synthgen.ingest.cli import main as cli_main

FIX = Path(__file__).parent / "fixtures" / "ingest"


@pytest.mark.slow
def test_ray_cluster_run_equals_local_run(tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    src = tmp_path / "tum_fr1"
    shutil.copytree(FIX / "tum_rgbd_fr1_xyz", src)
    (src / "rgb" / "1305031102.275326.png").write_bytes(b"")  # one quarantined frame travels too
    local = ingest(src, tmp_path / "local", IngestOptions(), progress=False)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        assert cli_main([str(src), "--out", str(tmp_path / "ray"), "--address", cluster.address, "-q"]) == 1
    finally:
        cluster.shutdown()
    remote = json.loads((tmp_path / "ray" / "_meta" / "ingest_report.json").read_text())
    assert remote["execution"]["mode"] == "ray" and remote["execution"]["nodes"] == 2
    assert remote["execution"]["cpus"] == 2 and remote["execution"]["tasks"] == 2
    for k in ("format", "counts", "quarantine_reasons", "warnings", "frames", "segmentation"):
        assert remote[k] == local[k], k
    assert local["counts"] == {"found": 3, "ingested": 2, "quarantined": 1}
    keys = list_keys(tmp_path / "local")
    assert keys == list_keys(tmp_path / "ray") and len(keys) == 2
    for key in keys:
        a, b = read_sample(tmp_path / "local", key), read_sample(tmp_path / "ray", key)
        for m in ("rgb", "depth", "mask"):
            assert np.array_equal(getattr(a, m), getattr(b, m)), (key, m)
        assert a.record == b.record
    assert not [p for p in (tmp_path / "ray").iterdir() if p.name.startswith(".tmp-")]
