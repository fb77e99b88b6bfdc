"""Render farm robustness with real Ray and real Blender on the smoke job: worker SIGKILL, node loss,
interrupt and resume, quarantine, config mismatch, worker recycling and re-render by key."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from synthgen.contract import list_keys, read_sample, verify_sample

from conftest import ROOT, SMOKE, run_cli


def _start_cli(*args: str, log: Path) -> subprocess.Popen:
    """Start the real ``synthgen`` CLI in the background, stdout+stderr into ``log``."""
    exe = Path(sys.executable).with_name("synthgen")
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    fh = open(log, "w")
    return subprocess.Popen([str(exe), *args], stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env)


def _events(out: Path) -> list[dict]:
    p = out / "_meta" / "ledger.jsonl"
    if not p.exists():
        return []
    lines = p.read_text().splitlines()
    return [json.loads(ln) for ln in lines if ln.endswith("}")]


def _wait_for(out: Path, proc: subprocess.Popen, pred, log: Path, timeout: float = 180) -> list[dict]:
    t0 = time.time()
    while time.time() - t0 < timeout:
        ev = _events(out)
        if pred(ev):
            return ev
        assert proc.poll() is None, f"CLI ended early (rc {proc.returncode}):\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"timed out waiting for ledger events:\n{log.read_text()[-3000:]}")


def _last_run(events: list[dict]) -> list[dict]:
    starts = [i for i, e in enumerate(events) if e["event"] == "run_start"]
    return events[starts[-1]:]


def _assert_store_complete(out: Path, keys: list[str]) -> None:
    assert list_keys(out) == keys
    for k in keys:
        assert verify_sample(out, k) == []
        s = read_sample(out, k)  # every EXR readable
        assert s.depth.shape == (64, 64) and np.isfinite(s.rgb).all()
    assert not list(out.glob(".tmp-*")) and not list((out / "_meta").rglob(".tmp-*"))


def _strip(rec: dict) -> dict:
    rec = dict(rec)
    rec.pop("files")
    return rec


def test_worker_sigkill_mid_run_retries_on_fresh_worker(tmp_path: Path, smoke_store: Path):
    out, log = tmp_path / "kill", tmp_path / "kill.log"
    proc = _start_cli("render", "--config", str(SMOKE), "--out", str(out), "--num-samples", "6",
                      "--workers", "2", "--no-progress", log=log)
    try:
        ev = _wait_for(out, proc, lambda ev: any(e["event"] == "sample_done" for e in ev), log)
        victim = next(e["pid"] for e in ev if e["event"] == "sample_done")  # it now renders its queued sample
        os.kill(victim, signal.SIGKILL)
        rc = proc.wait(timeout=240)
    finally:
        proc.kill()
    text = log.read_text()
    assert rc == 0, text[-3000:]
    keys = [f"smoke_s7_{i:06d}" for i in range(6)]
    _assert_store_complete(out, keys)
    ev = _last_run(_events(out))
    died = [e for e in ev if e["event"] == "worker_died"]
    assert [e["pid"] for e in died] == [victim]
    retries = [e for e in ev if e["event"] == "sample_retry"]
    assert len(retries) == 1 and retries[0]["pid"] == victim and retries[0]["reason"] == "worker_died"
    done = [e["key"] for e in ev if e["event"] == "sample_done"]
    assert sorted(done) == keys  # each planned key rendered exactly once (plus the killed attempt)
    # a replacement actor is started; with renders this short the surviving worker may finish the
    # rest (the retry included) before the replacement is even ready
    assert len({e["pid"] for e in ev if e["event"] == "worker_start"}) in (2, 3)
    redone = [e["pid"] for e in ev if e["event"] == "sample_done" and e["key"] == retries[0]["key"]]
    assert len(redone) == 1 and redone[0] != victim
    run = json.loads((out / "_meta" / "run.json").read_text())
    assert run["status"] == "complete" and run["worker_deaths"] == 1 and run["retried"] == 1
    assert "1 retried, 0 failed; 1 worker death(s)" in text
    assert not (out / "_meta" / "quarantine.json").exists()
    # the retried sample is bit-for-bit the sample of an undisturbed run
    for k in keys[:4]:
        assert _strip(json.loads((out / f"{k}.json").read_text())) == _strip(json.loads((smoke_store / f"{k}.json").read_text()))


def test_node_loss_all_samples_land(tmp_path: Path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    proc = None
    try:
        nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        out, log = tmp_path / "nodeloss", tmp_path / "nodeloss.log"
        proc = _start_cli("render", "--config", str(SMOKE), "--out", str(out), "--num-samples", "8",
                          "--address", cluster.address, "--no-progress", log=log)
        ids = {n.node_id: n for n in nodes}
        ev = _wait_for(out, proc, lambda ev: any(e["event"] == "sample_done" for e in ev)
                       and any(e["event"] == "worker_start" and e["node_id"] in ids for e in ev), log)
        on_workers = [e for e in ev if e["event"] == "worker_start" and e["node_id"] in ids]
        busy = {e["pid"] for e in ev if e["event"] == "sample_done"}
        victim = next((e for e in on_workers if e["pid"] not in busy), on_workers[0])  # still on its first sample
        cluster.remove_node(ids[victim["node_id"]])
        rc = proc.wait(timeout=240)
        text = log.read_text()
        assert rc == 0, text[-3000:]
        _assert_store_complete(out, [f"smoke_s7_{i:06d}" for i in range(8)])
        ev = _last_run(_events(out))
        assert victim["pid"] in [e["pid"] for e in ev if e["event"] == "worker_died"]
        assert "0 failed" in text
    finally:
        if proc is not None:
            proc.kill()
        cluster.shutdown()


def test_interrupt_then_resume_renders_only_missing(tmp_path: Path, smoke_store: Path):
    out, log = tmp_path / "resume", tmp_path / "resume.log"
    # 24 samples (~0.2-0.5 s each on one worker): the interrupt lands mid-run even on a fast machine
    proc = _start_cli("render", "--config", str(SMOKE), "--out", str(out), "--workers", "1", "--num-samples", "24",
                      "--no-progress", log=log)
    try:
        _wait_for(out, proc, lambda ev: any(e["event"] == "sample_done" for e in ev), log)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
    finally:
        proc.kill()
    assert rc == 130, log.read_text()[-3000:]
    assert "interrupted" in log.read_text()
    assert not list(out.glob(".tmp-*")) and not list((out / "_meta").rglob(".tmp-*"))
    planned = [f"smoke_s7_{i:06d}" for i in range(24)]
    have = [k for k in list_keys(out) if verify_sample(out, k) == []]
    assert 1 <= len(have) < 24 and set(list_keys(out)) == set(have)  # no partial sample
    mtimes = {k: (out / f"{k}.json").stat().st_mtime_ns for k in have}
    # a killed writer's leftovers are cleaned up by the next run
    (out / ".tmp-leftover.exr").write_bytes(b"partial")

    res = run_cli("render", "--resume", "--out", str(out), "--set", "render.recycle_after_samples=6",
                  "--workers", "1", "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    missing = sorted(set(planned) - set(have))
    assert f"wrote {len(missing)} samples" in res.stdout and f"{len(have)} already complete" in res.stdout
    ev = _last_run(_events(out))
    assert sorted(e["key"] for e in ev if e["event"] == "sample_done") == missing
    assert {k: (out / f"{k}.json").stat().st_mtime_ns for k in have} == mtimes  # not touched
    _assert_store_complete(out, planned)
    for k in planned[:4]:  # identical to an uninterrupted run (the session's smoke store has 4)
        assert _strip(json.loads((out / f"{k}.json").read_text())) == _strip(json.loads((smoke_store / f"{k}.json").read_text()))
        assert np.array_equal(read_sample(out, k).depth, read_sample(smoke_store, k).depth)
    # recycling: a fresh worker process every 6 samples, each with its peak RSS reported
    run = json.loads((out / "_meta" / "run.json").read_text())
    n_procs = -(-len(missing) // 6)
    assert run["recycled"] == n_procs - 1
    procs = [w for w in run["worker_stats"] if w["samples"]]
    assert len(procs) == n_procs and all(w["samples"] <= 6 for w in procs)
    assert sum(w["samples"] for w in procs) == len(missing)
    assert all(100 < w["peak_rss_mb"] < 8000 for w in procs) and run["peak_worker_rss_mb"] > 100
    assert "peak worker RSS" in res.stdout and f"{n_procs - 1} recycled" in res.stdout
    store = json.loads((out / "_meta" / "store.json").read_text())
    assert store["num_samples"] == 24 and store["seed"] == 7 and len(store["config_hash"]) == 64

    # nothing left: a re-run renders nothing and does not start Ray
    res = run_cli("render", "--config", str(SMOKE), "--out", str(out), "--no-progress")
    assert res.returncode == 0 and "wrote 0 samples" in res.stdout and "4 already complete" in res.stdout


def _bad_glb(path: Path) -> None:
    """A GLB whose header and chunk lengths are right but whose JSON chunk is garbage."""
    body = b"this is not JSON {{{ ]]"
    body += b" " * (-len(body) % 4)
    path.write_bytes(b"glTF" + struct.pack("<II", 2, 12 + 8 + len(body)) + struct.pack("<I", len(body))
                     + b"JSON" + body)


def test_failing_scan_is_quarantined_and_other_config_refused(tmp_path: Path):
    data = yaml.safe_load(SMOKE.read_text())
    bad = tmp_path / "broken_head.glb"
    _bad_glb(bad)
    data["scans"][0] = {"id": "broken_head", "path": str(bad), "size": {"height_m": 0.3}}
    data["scans"][1]["path"] = str((SMOKE.parent / data["scans"][1]["path"]).resolve())
    data["hdris"]["paths"] = [str((SMOKE.parent / p).resolve()) for p in data["hdris"]["paths"]]
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump(data))
    out = tmp_path / "quarantine"
    # worker-side quarantine: the scan preflight (exit 2 up front, tests/test_scans.py) is skipped
    res = run_cli("render", "--config", str(cfg), "--out", str(out), "--no-progress", "--no-scan-check")
    assert res.returncode == 1, res.stderr[-3000:]
    q = json.loads((out / "_meta" / "quarantine.json").read_text())["quarantined"]
    good = [k for k in list_keys(out)]
    assert len(q) + len(good) == 4 and len(q) == 2  # every planned sample: written or quarantined
    for e in q:
        assert e["scan_id"] == "broken_head" and e["reason"] == "scan_import_failed" and e["attempts"] == 1
        assert str(bad) in e["error"] and "json" in e["error"].lower()
        assert not (out / f"{e['key']}.rgb.exr").exists()
    assert all(verify_sample(out, k) == [] for k in good)
    assert "2 failed" in res.stdout and "quarantine.json" in res.stderr and str(bad) in res.stderr
    assert json.loads((out / "_meta" / "run.json").read_text())["status"] == "failures"

    # another config into the same folder: refused before anything starts, the folder untouched
    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.rglob("*"))
    res = run_cli("render", "--config", str(SMOKE), "--out", str(out), "--no-progress")
    assert res.returncode == 2
    assert "already holds another job" in res.stderr and "scans[0].id" in res.stderr and "--force" in res.stderr
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.rglob("*")) == before


def test_only_key_rerenders_with_identical_parameters(tmp_path: Path, smoke_store: Path):
    out = tmp_path / "only"
    key = "smoke_s7_000003"
    res = run_cli("render", "--config", str(SMOKE), "--only", key, "--set", "render.samples=8",
                  "--set", "output.previews=false", "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    assert list_keys(out) == [key] and verify_sample(out, key) == []
    new = json.loads((out / f"{key}.json").read_text())
    ref = json.loads((smoke_store / f"{key}.json").read_text())
    assert new["render"]["settings"]["samples"] == 8 and ref["render"]["settings"]["samples"] == 4
    assert new["render"]["params"] == ref["render"]["params"] and new["camera"] == ref["camera"]
    assert new["render"]["config_hash"] != ref["render"]["config_hash"]
    assert not (out / "_meta" / "previews").exists()
    s_new, s_ref = read_sample(out, key), read_sample(smoke_store, key)
    assert abs(s_new.mask.mean() - s_ref.mask.mean()) < 0.01  # same framing, less noise
    # a key of another job, and a bad --set, are refused with exit 2
    res = run_cli("render", "--config", str(SMOKE), "--only", "portrait_s7_000001", "--out", str(out))
    assert res.returncode == 2 and "differ from the config's name 'smoke'" in res.stderr
    res = run_cli("render", "--config", str(SMOKE), "--set", "render.samples", "--out", str(out))
    assert res.returncode == 2 and "KEY=VALUE" in res.stderr


def test_unexpected_error_is_retried_on_fresh_worker_then_quarantined(tmp_path: Path):
    """A write that keeps failing (a folder sits where the RGB member goes) is retried on a fresh
    worker process render.max_retries times, then quarantined with the error; exit code 1."""
    out = tmp_path / "blocked"
    (out / "smoke_s7_000000.rgb.exr").mkdir(parents=True)
    res = run_cli("render", "--config", str(SMOKE), "--out", str(out), "--num-samples", "1",
                  "--set", "render.max_retries=1", "--no-progress")
    assert res.returncode == 1, res.stderr[-3000:]
    q = json.loads((out / "_meta" / "quarantine.json").read_text())["quarantined"]
    assert len(q) == 1 and q[0]["key"] == "smoke_s7_000000" and q[0]["reason"] == "exception"
    assert q[0]["attempts"] == 2 and "IsADirectoryError" in q[0]["error"] and "smoke_s7_000000.rgb.exr" in q[0]["error"]
    ev = _last_run(_events(out))
    assert len({e["pid"] for e in ev if e["event"] == "worker_start"}) == 2  # the retry ran in a fresh process
    assert [e["event"] for e in ev if e["event"].startswith("sample_")] == ["sample_retry", "sample_quarantined"]
    run = json.loads((out / "_meta" / "run.json").read_text())
    assert run["retried"] == 1 and run["written"] == 0 and run["status"] == "failures"
    assert "1 retried, 1 failed" in res.stdout
    assert not list(out.glob(".tmp-*"))


def test_gpu_device_on_a_cluster_without_gpus_is_refused(tmp_path: Path):
    """``render.device: gpu`` runs one worker per GPU; a Ray cluster without GPUs (this machine) gets
    a clear error naming the setting and exit 2, not hanging actors."""
    out = tmp_path / "gpu"
    res = run_cli("render", "--config", str(SMOKE), "--out", str(out), "--set", "render.device=gpu",
                  "--no-progress")
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert "render.device: gpu" in res.stderr and "no GPUs" in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()  # no ledger left behind: the same folder then takes the CPU run
    res = run_cli("render", "--config", str(SMOKE), "--out", str(out), "--indices", "0", "--no-progress")
    assert res.returncode == 0, res.stderr[-2000:]
    assert list_keys(out) == ["smoke_s7_000000"]
