"""Hostile cases of ``synthgen render`` (issue 15), with real processes, files, mounts and Ray.

Fast tests need no Ray; the ``slow`` ones start the embedded cluster (tiny 32x32 renders, 1 spp).
Mounting a tmpfs needs root (CAP_SYS_ADMIN); those tests skip, saying so, where it is not allowed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, SMOKE, run_cli, smoke_config_copy

TINY = ["--set", "render.width=32", "--set", "render.height=32", "--set", "render.samples=1", "--no-progress"]
PY = sys.executable


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1", **extra)


def _start_cli(*args: str, log: Path, **env: str) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("synthgen")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "synthgen.cli"]
    return subprocess.Popen(cmd + list(args), stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=ROOT,
                            env=_env(**env))


def _events(out: Path) -> list[dict]:
    p = out / "_meta" / "ledger.jsonl"
    if not p.exists():
        return []
    return [json.loads(ln) for ln in p.read_text().splitlines() if ln.endswith("}")]


def _last_run(out: Path) -> list[dict]:
    ev = _events(out)
    starts = [i for i, e in enumerate(ev) if e["event"] == "run_start"]
    return ev[starts[-1]:] if starts else []


def _wait_for(pred, proc: subprocess.Popen, log: Path, timeout: float = 240, what: str = "") -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return
        assert proc.poll() is None, f"CLI ended early (rc {proc.returncode}) waiting for {what}:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def _tmpfs(path: Path, size: str, ro: bool = False):
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {r.stderr.strip() or r.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _smoke_config(tmp: Path, **changes) -> Path:
    """The smoke config with absolute asset paths (so it can live anywhere) and ``changes``."""
    return smoke_config_copy(tmp, **changes)


def _descendants(pid: int) -> dict[int, str]:
    """pid -> comm of every descendant of ``pid`` (Linux /proc)."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{name}/stat").read_text()
                head, _, rest = stat.rpartition(")")
                table[int(name)] = (int(rest.split()[1]), head.partition("(")[2])
    out, todo = {}, [pid]
    while todo:
        p = todo.pop()
        for c, (ppid, comm) in table.items():
            if ppid == p and c not in out:
                out[c] = comm
                todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


# ============================================================================================
# 1. one driver per store


_HOLDER = textwrap.dedent("""
    import sys, time
    from synthgen.storelock import StoreLock
    lock = StoreLock(sys.argv[1]).acquire()
    print("LOCKED", flush=True)
    time.sleep(120)
""")


def _hold_lock(store: Path, **env: str) -> subprocess.Popen:
    p = subprocess.Popen([PY, "-c", _HOLDER, str(store)], stdout=subprocess.PIPE, text=True, env=_env(**env))
    assert p.stdout.readline().strip() == "LOCKED"
    return p


@pytest.mark.parametrize("mode", ["flock", "excl"])
def test_store_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path: Path, mode: str, monkeypatch):
    from synthgen.errors import StoreLockedError
    from synthgen.storelock import StoreLock, lock_holder

    monkeypatch.setenv("SYNTHGEN_STORE_LOCK", mode)
    store = tmp_path / "store"
    holder = _hold_lock(store, SYNTHGEN_STORE_LOCK=mode)
    try:
        assert lock_holder(store)["pid"] == holder.pid  # what shard / qa can ask, read-only
        with pytest.raises(StoreLockedError) as e:
            StoreLock(store).acquire()
        assert f"pid {holder.pid} on host" in str(e.value) and "another --out" in str(e.value)
        with pytest.raises(StoreLockedError):  # --force-unlock never breaks a live holder on this host
            StoreLock(store).acquire(force_unlock=True)
    finally:
        holder.kill()
        holder.wait()
    assert lock_holder(store) is None
    lock = StoreLock(store).acquire()  # the holder is gone: its stale lock is taken over
    assert lock.stale is not None and lock.stale["pid"] == holder.pid
    rec = json.loads((store / "_meta" / "lock").read_text())
    assert rec["pid"] == os.getpid() and rec["pid_start"] and rec["host"]
    lock.release()
    assert not (store / "_meta" / "lock").exists()
    # a holder on another host cannot be checked: refused unless --force-unlock
    (store / "_meta" / "lock").write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": time.time()}))
    with pytest.raises(StoreLockedError, match="--force-unlock"):
        StoreLock(store).acquire()
    lock = StoreLock(store).acquire(force_unlock=True)
    assert lock.stale["host"] == "elsewhere"
    lock.release()


# ============================================================================================
# 2. disk space


def test_disk_space_preflight_refuses_a_job_that_cannot_fit(tmp_path: Path):
    with _tmpfs(tmp_path / "small", "1m") as mnt:
        out = mnt / "store"
        res = run_cli("render", "--config", str(SMOKE), "--out", str(out), "--num-samples", "500", *TINY)
        assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
        assert "not enough disk space" in res.stderr and "500 samples need about" in res.stderr
        assert "--force" in res.stderr and "Traceback" not in res.stderr
        assert not out.exists()  # refused before anything was written, lock included
        # the dry run shows the same estimate
        res = run_cli("render", "--config", str(SMOKE), "--out", str(out), "--num-samples", "500", *TINY,
                      "--dry-run")
        assert res.returncode == 0
        doc = yaml.safe_load(res.stdout.split("# dry run")[0])
        assert doc["estimate"]["disk"]["bytes_needed"] > doc["estimate"]["disk"]["bytes_free"]


# ============================================================================================
# 3. hostile YAML


def _bomb(depth: int, width: int = 9, where: str = "unknown") -> str:
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    for d in range(1, depth + 1):
        lines.append(f"a{d}: &a{d} [" + ", ".join([f"*a{d - 1}"] * width) + "]")
    text = "\n".join(lines) + "\n"
    if where == "scans":  # the bomb at a known key of list type
        text = text.replace("a0: &a0", "scans: &a0", 1)
    return text


_MEASURE = textwrap.dedent("""
    import json, resource, sys, time
    from synthgen.rendering.config import ConfigError, resolve_job
    from synthgen.rendering.cli import _parse_sets
    resolve_job(sys.argv[1])  # warm: imports, a good config
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = []
    for case in json.loads(sys.argv[2]):
        t0 = time.perf_counter()
        try:
            if case[0] == "--set":
                resolve_job(case[1], _parse_sets([case[2]]))
            else:
                resolve_job(case[0])
            err = None
        except ConfigError as exc:
            err = str(exc)
        dt = time.perf_counter() - t0
        out.append({"s": dt, "peak_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) / 1024,
                    "err": err})
    print(json.dumps(out))
""")


def test_yaml_alias_bombs_are_refused_within_1s_and_100mb(tmp_path: Path):
    """Nested-alias bombs of increasing depth (9 per level: 9**depth strings) at an unknown key, at a
    known list key, and in a --set value: each refused with a bounded message. Measured in a fresh
    process: each load's time, and the growth of the peak RSS (getrusage) over all of them."""
    names, cases = [], []
    for depth in (1, 3, 5, 7, 9, 12):
        for where in ("unknown", "scans"):
            p = tmp_path / f"bomb_{where}_{depth}.yaml"
            p.write_text(_bomb(depth, where=where))
            names.append(f"{where} depth {depth} ({p.stat().st_size} B)")
            cases.append([str(p)])
    flow = "[" + ",".join(["&b0 [1,2,3,4,5,6,7,8,9]"] + [f"&b{d} [" + ",".join([f"*b{d - 1}"] * 9) + "]"
                                                        for d in range(1, 10)]) + "]"
    names.append("--set depth 9")
    cases.append(["--set", str(SMOKE), f"render.samples={flow}"])
    r = subprocess.run([PY, "-c", _MEASURE, str(SMOKE), json.dumps(cases)], capture_output=True, text=True,
                       timeout=300, env=_env())
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(r.stdout.strip().splitlines()[-1])
    for what, m in zip(names, results):
        assert m["err"], f"{what}: accepted"
        assert m["s"] < 1.0, f"{what}: {m['s']:.2f} s"
        assert len(m["err"]) < 2000, f"{what}: message of {len(m['err'])} characters"
    assert results[-1]["peak_growth_mb"] < 100, results
    print("\n".join(f"{w}: {m['s'] * 1000:.0f} ms, peak RSS +{m['peak_growth_mb']:.0f} MB: {m['err'][:90]}"
                    for w, m in zip(names, results)))
    # through the CLI: exit 2, one clear line, no traceback
    res = run_cli("render", "--config", str(tmp_path / "bomb_unknown_9.yaml"), "--dry-run")
    assert res.returncode == 2 and "expands to more than" in res.stderr and "Traceback" not in res.stderr


def test_validation_messages_show_a_bounded_part_of_a_value(tmp_path: Path):
    from synthgen.rendering.config import ConfigError, resolve_job

    p = tmp_path / "big.yaml"
    data = yaml.safe_load(SMOKE.read_text())
    data["unknown_key"] = {"x" * 10_000: list(range(50_000))}
    data["render"]["samples"] = "s" * 1_000_000
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as e:
        resolve_job(p)
    msg = str(e.value)
    assert "unknown_key: unknown key" in msg and "render.samples" in msg and len(msg) < 1000
    for text, what in ((b"num_samples: " + b"9" * 5000 + b"\n", "unusable value"),
                       (b"a: " + b"[" * 200 + b"]" * 200 + b"\n", "nesting deeper"),
                       (b"a: &x [*x]\n", "recursive alias")):
        p.write_bytes(text)
        with pytest.raises(ConfigError, match=what):
            resolve_job(p)


# ============================================================================================
# 4. jobs of any size


def test_dry_run_of_a_billion_samples_answers_in_seconds(tmp_path: Path):
    cfg = ROOT / "configs" / "portrait.yaml"
    t0 = time.perf_counter()
    res = run_cli("render", "--config", str(cfg), "--num-samples", "1000000000", "--out", str(tmp_path / "o"),
                  "--dry-run", timeout=120)
    dt = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr[-2000:]
    doc = yaml.safe_load(res.stdout.split("# dry run")[0])
    plan = doc["plan"]
    assert plan["num_samples"] == 10**9 and plan["estimated"] is True and plan["estimate_draws"] == 100_000
    per = plan["samples_per_source"]
    assert abs(sum(per.values()) - 10**9) < 1000 and {"lee_perry_smith", "bust_man_wreath", "mh"} <= set(per)
    est = doc["estimate"]
    assert est["disk"]["bytes_needed"] > 10**9 * 1000 and est["time"]["worker_hours"] > 0
    assert "estimated from 100000" in res.stdout and "worker-hours" in res.stdout
    assert dt < 30, f"dry run took {dt:.1f} s"  # ~3 s on an idle 2-core machine, most of it imports


def test_vectorised_subjects_equal_subject_for():
    from synthgen.rendering.config import resolve_job
    from synthgen.rendering.planning import IndexSet, Subjects, describe_plan
    from synthgen.rendering.sampling import plan, subject_for

    rng = np.random.default_rng(3)
    for cfg, over in ((SMOKE, {}), (ROOT / "configs" / "portrait.yaml", {"relights_per_view": 3, "seed": 5}),
                      (ROOT / "configs" / "variation.yaml", {})):
        job = resolve_job(cfg, {"num_samples": 4_000_000_000, **over})
        idx = np.concatenate([np.arange(200), rng.integers(0, 4_000_000_000, 200)])
        subj = Subjects(job)
        assert [subj.name(c) for c in subj.codes(idx)] == [subject_for(job, int(i)) for i in idx]
        small = resolve_job(cfg, {"num_samples": 300, **over})
        exact = describe_plan(small, IndexSet.full(300))["samples_per_scan"]
        assert exact == {k: len(v) for k, v in plan(small).items()}


# ============================================================================================
# 5. HDRI preflight


def test_corrupt_hdris_are_refused_before_rendering(tmp_path: Path):
    from synthgen.rendering.hdri_check import decode_radiance

    src = sorted((ROOT / "hdris").glob("*.hdr"))[0]
    data = src.read_bytes()
    assert decode_radiance(data) == (1024, 512)
    cache = tmp_path / "cache"
    cases = {"truncated.hdr": data[: len(data) * 2 // 3],
             "corrupt.hdr": data[:2000] + bytes([255]) * 200 + data[2200:],
             "headless.hdr": b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 512 +X 1024\n"}
    exr = (ROOT / "hdris" / "pmndrs_studio_512x256.exr").read_bytes()
    cases["truncated.exr"] = exr[: len(exr) // 2]
    for name, content in cases.items():
        d = tmp_path / name.replace(".", "_")
        d.mkdir()
        (d / name).write_bytes(content)
        cfg = _smoke_config(d)
        data_ = yaml.safe_load(cfg.read_text())
        data_["hdris"]["paths"] = [str(src), str(d / name)]
        cfg.write_text(yaml.safe_dump(data_))
        out = d / "out"
        t0 = time.perf_counter()
        res = subprocess.run([PY, "-m", "synthgen.cli", "render", "--config", str(cfg), "--out", str(out), *TINY],
                             capture_output=True, text=True, env=_env(SYNTHGEN_CACHE_DIR=str(cache)), cwd=ROOT)
        assert res.returncode == 2, f"{name}: {res.stdout[-1000:]} {res.stderr[-2000:]}"
        assert str(d / name) in res.stderr and "unreadable HDRI" in res.stderr and "Traceback" not in res.stderr
        assert not out.exists() and time.perf_counter() - t0 < 60
    # good files are remembered by content hash; bad ones are not
    assert len(list((cache / "hdri-ok").iterdir())) == 1


# ============================================================================================
# 6. unusable --out and config bytes


def test_unusable_out_and_undecodable_config_are_exit_2_without_traceback(tmp_path: Path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = {"a file": a_file, "under a file": a_file / "sub" / "store", "in /proc": Path("/proc/synthgen/store")}
    for what, out in cases.items():
        res = run_cli("render", "--config", str(SMOKE), "--out", str(out), *TINY)
        assert res.returncode == 2 and "--out" in res.stderr and "Traceback" not in res.stderr, (what, res.stderr)
    with _tmpfs(tmp_path / "ro", "1m", ro=True) as ro:
        res = run_cli("render", "--config", str(SMOKE), "--out", str(ro / "store"), *TINY)
        assert res.returncode == 2 and "read-only file system" in res.stderr and "Traceback" not in res.stderr
    # no permission: root without CAP_DAC_OVERRIDE is an ordinary user for permission bits
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    cmd = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search",
           PY, "-m", "synthgen.cli", "render", "--config", str(SMOKE), *TINY]
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("the permission case needs root and setpriv")
    for out in (locked, locked / "new" / "store"):
        res = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True, env=_env(), cwd=ROOT)
        assert res.returncode == 2 and "not writable by this user" in res.stderr, res.stderr[-2000:]
        assert "Traceback" not in res.stderr
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(SMOKE.read_bytes() + "# caf\xe9\n".encode("latin-1"))
    res = run_cli("render", "--config", str(bad), "--out", str(tmp_path / "o"), *TINY)
    assert res.returncode == 2 and "not UTF-8" in res.stderr and "offset" in res.stderr
    assert "Traceback" not in res.stderr


# ============================================================================================
# Ray runs (slow): two drivers; disk full mid-run; a dead raylet; a SIGKILLed driver


@pytest.fixture(scope="module")
def two_drivers(tmp_path_factory):
    """Driver 1 renders 3 samples into a store; driver 2 starts on the same store while 1 runs."""
    base = tmp_path_factory.mktemp("two_drivers")
    out, log1 = base / "store", base / "d1.log"
    d1 = _start_cli("render", "--config", str(SMOKE), "--out", str(out), "--num-samples", "3", "--workers", "1",
                    *TINY, log=log1)
    try:
        _wait_for(lambda: (out / "_meta" / "lock").exists(), d1, log1, what="driver 1's lock")
        d2 = run_cli("render", "--config", str(SMOKE), "--out", str(out), "--num-samples", "3", *TINY)
        rc1 = d1.wait(timeout=300)
    finally:
        d1.kill()
    return {"out": out, "d1": d1, "rc1": rc1, "log1": log1.read_text(), "d2": d2}


@pytest.mark.slow
def test_second_driver_on_a_store_is_refused_naming_the_holder(two_drivers):
    d2 = two_drivers["d2"]
    assert d2.returncode == 2, d2.stdout[-2000:] + d2.stderr[-2000:]
    assert f"in use by another synthgen render (pid {two_drivers['d1'].pid} on host" in d2.stderr
    assert "Traceback" not in d2.stderr
    assert two_drivers["rc1"] == 0, two_drivers["log1"][-3000:]
    out = two_drivers["out"]
    done = [e["key"] for e in _events(out) if e["event"] == "sample_done"]
    assert sorted(done) == [f"smoke_s7_{i:06d}" for i in range(3)]  # each rendered once
    assert not (out / "_meta" / "lock").exists()


@pytest.mark.slow
def test_disk_full_mid_run_stops_with_exit_3_and_keeps_complete_samples(two_drivers, tmp_path: Path):
    """On a small tmpfs holding the 3-sample store (sample 0 damaged, previews unwritable), fill the
    disk after the first sample of the run: the run stops (exit 3) with io_error, prints what it
    could not write, and every sample it reported written is complete. Also: the damaged sample is
    named when re-rendered, and failed previews do not fail samples."""
    from synthgen.contract import verify_sample

    with _tmpfs(tmp_path / "disk", "8m") as mnt:
        out = mnt / "store"
        shutil.copytree(two_drivers["out"], out)
        rgb = out / "smoke_s7_000000.rgb.exr"
        rgb.write_bytes(rgb.read_bytes()[:-20] + b"\0" * 20)
        shutil.rmtree(out / "_meta" / "previews")
        (out / "_meta" / "previews").write_text("a file where the previews folder goes")
        log = tmp_path / "full.log"
        proc = _start_cli("render", "--config", str(SMOKE), "--out", str(out), "--num-samples", "40",
                          "--workers", "1", *TINY, log=log)
        try:
            n_runs = sum(e["event"] == "run_start" for e in _events(out))
            _wait_for(lambda: sum(e["event"] == "run_start" for e in _events(out)) > n_runs and
                      any(e["event"] == "sample_done" for e in _last_run(out)), proc, log, what="a sample")
            with open(mnt / "filler", "wb") as fh, contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            rc = proc.wait(timeout=180)
        finally:
            proc.kill()
        text = log.read_text()
        assert rc == 3, text[-4000:]
        assert "Traceback" not in text
        assert "re-rendering smoke_s7_000000: " in text and "sha256 does not match" in text
        assert "stopped early (io_error)" in text and "No space left on device" in text
        assert "free space" in text and "--resume" in text
        assert "could not write" in text  # run.json (or the quarantine) printed instead
        run = _last_run(out)
        written = [e["key"] for e in run if e["event"] == "sample_done"]
        assert "smoke_s7_000000" in written
        for k in written:
            assert verify_sample(out, k) == [], k  # reported written = complete, previews or not
        assert all("preview_error" in e for e in run if e["event"] == "sample_done")
        assert not (out / "_meta" / "lock").exists() and not list(out.glob(".tmp-*"))


@pytest.mark.slow
def test_dead_raylet_ends_the_run_within_seconds(tmp_path: Path):
    out, log = tmp_path / "store", tmp_path / "raylet.log"
    proc = _start_cli("render", "--config", str(SMOKE), "--out", str(out), "--num-samples", "30", "--workers", "1",
                      *TINY, log=log)
    try:
        _wait_for(lambda: any(e["event"] == "sample_done" for e in _events(out)), proc, log, what="a sample")
        raylets = [p for p, c in _descendants(proc.pid).items() if c == "raylet"]
        assert len(raylets) == 1, _descendants(proc.pid)
        helpers = _descendants(proc.pid)
        os.kill(raylets[0], signal.SIGKILL)
        t0 = time.perf_counter()
        rc = proc.wait(timeout=120)
        took = time.perf_counter() - t0
    finally:
        proc.kill()
    text = log.read_text()
    assert rc == 4, text[-4000:]
    assert took < 30, f"the driver took {took:.1f} s to end after the raylet died"
    assert "cluster_lost" in text and "raylet" in text and "--resume" in text and "Traceback" not in text
    run = json.loads((out / "_meta" / "run.json").read_text())
    assert run["status"] == "cluster_lost" and run["not_rendered"] > 0 and run["written"] >= 1
    ends = [e for e in _events(out) if e["event"] == "run_end"]
    assert ends and ends[-1]["status"] == "cluster_lost"
    time.sleep(3)
    assert [p for p in helpers if _alive(p)] == []  # nothing of the dead cluster left behind
    print(f"driver ended {took:.1f} s after the raylet was killed")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.slow
@pytest.mark.parametrize("watchdog_too", [False, True], ids=["driver", "driver_and_watchdog"])
def test_sigkilled_driver_leaves_no_ray_processes_and_its_lock_is_taken_over(tmp_path: Path, watchdog_too: bool):
    """SIGKILL the driver of an embedded cluster: its watchdog removes every Ray process (the
    dashboard and runtime-env agents outlive the driver otherwise). With the watchdog killed too, the
    next driver on the store takes the dead driver's lock over and stops the leftovers it recorded."""
    out, log = tmp_path / "store", tmp_path / "kill.log"
    proc = _start_cli("render", "--config", str(SMOKE), "--out", str(out), "--num-samples", "30", "--workers", "1",
                      *TINY, log=log)
    try:
        _wait_for(lambda: any(e["event"] == "worker_start" for e in _events(out)), proc, log, what="a worker")
        time.sleep(1.5)  # the watchdog samples the process tree every second
        tree = _descendants(proc.pid)
        watchdogs = [p for p in tree if "raywatch.py" in _cmdline(p)]
        assert len(watchdogs) == 1, {p: _cmdline(p)[:100] for p in tree}
        helpers = {p: c for p, c in tree.items() if p not in watchdogs}
        assert {"raylet", "gcs_server"} <= set(helpers.values()), helpers
        if watchdog_too:
            os.kill(watchdogs[0], signal.SIGKILL)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    deadline = time.time() + (5 if watchdog_too else 15)
    while time.time() < deadline and any(_alive(p) for p in helpers):
        time.sleep(0.2)
    left = {p: c for p, c in helpers.items() if _alive(p)}
    if not watchdog_too:
        assert left == {}, f"Ray processes outlived the SIGKILLed driver: {left}"
    assert (out / "_meta" / "lock").exists()  # left behind by the killed driver
    # the next driver takes the stale lock over (then refuses this job for lack of space, before Ray)
    res = run_cli("render", "--config", str(SMOKE), "--out", str(out), "--num-samples", str(10**12), *TINY)
    assert res.returncode == 2 and f"took over the lock of a driver that is gone (pid {proc.pid}" in res.stderr
    assert "not enough disk space" in res.stderr
    assert not (out / "_meta" / "lock").exists()
    if watchdog_too:
        if left:
            assert "leftover Ray process(es) of that driver" in res.stderr, (left, res.stderr[-2000:])
        time.sleep(1)
        assert {p: c for p, c in helpers.items() if _alive(p)} == {}


@pytest.mark.slow
def test_joined_cluster_without_room_for_a_worker_gives_up_after_the_setting(tmp_path: Path):
    """--address: a worker needs 2 CPUs on a 1-CPU cluster; the driver shows that it waits, then
    stops after render.max_wait_for_workers_s (exit 4) instead of waiting forever."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        out = tmp_path / "store"
        t0 = time.perf_counter()
        res = run_cli("render", "--config", str(SMOKE), "--out", str(out), "--num-samples", "2",
                      "--address", cluster.address, "--set", "render.threads_per_worker=2",
                      "--set", "render.max_wait_for_workers_s=6", *TINY, timeout=300)
        took = time.perf_counter() - t0
    finally:
        cluster.shutdown()
    text = res.stdout + res.stderr
    assert res.returncode == 4, text[-3000:]
    assert "no render worker is running for" in text and "render.max_wait_for_workers_s" in text
    assert "stopped early (no_workers)" in text and "Traceback" not in text
    run = json.loads((out / "_meta" / "run.json").read_text())
    assert run["status"] == "no_workers" and run["not_rendered"] == 2
    assert took < 120


@pytest.mark.slow
def test_hdri_blender_cannot_load_is_an_asset_error_not_retried(tmp_path: Path):
    """Should an HDRI that passed the preflight (e.g. replaced since) fail in Blender, the worker
    reports reason asset_error, not retryable, naming the file (in-process render actor, real bpy)."""
    from synthgen.rendering.actor import RenderActorImpl
    from synthgen.rendering.config import resolve_job

    bad = tmp_path / "replaced.hdr"
    bad.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 512 +X 1024\n" + b"\x02\x02\x04" * 100)
    job = resolve_job(SMOKE, {"render.width": 32, "render.height": 32, "render.samples": 1})
    data = job.model_dump(mode="json")
    for h in data["hdris"]:
        h["path"] = str(bad)
    actor = RenderActorImpl(data, str(tmp_path / "out"), previews=False, threads=1)
    report = actor.render(0)
    assert report["rendered"] is None and len(report["done"]) == 1
    res = report["done"][0]
    assert res["status"] == "error" and res["reason"] == "asset_error" and res["retryable"] is False
    assert str(bad) in res["error"]


def test_scheduler_plans_small_jobs_whole_and_large_ones_in_windows():
    """A job up to the window is grouped by subject exactly like sampling.plan; a larger one is
    pulled lazily, never holding much more than a window of indices."""
    from synthgen.rendering.config import resolve_job
    from synthgen.rendering.planning import IndexSet, todo_chunks
    from synthgen.rendering.sampling import plan
    from synthgen.rendering.scheduler import Scheduler

    class NoRay:
        def remote(self, **kw):
            return lambda cls: cls

    job = resolve_job(ROOT / "configs" / "portrait.yaml", {"num_samples": 10**9})
    done = np.array([3, 7, 8], np.int64)
    small = Scheduler(NoRay(), job, Path("/nonexistent"), todo_chunks(IndexSet.full(3000), done, 256), 1, "h",
                      None, None, window=5000)
    want = plan(job, [i for i in range(3000) if i not in (3, 7, 8)])
    assert {k: list(v) for k, v in small.queues.items() if v} == want
    assert list(small.queues)[:len(want)] == list(want)  # same subject order
    big = Scheduler(NoRay(), job, Path("/nonexistent"), todo_chunks(IndexSet.full(10**9), done, 256), 1, "h",
                    None, None, window=1000)
    seen = []
    for _ in range(5000):
        seen.append(big.next_index(None)[1])
        assert big.queued <= 1000 + 256
    assert len(set(seen)) == 5000 and not set(seen) & {3, 7, 8} and max(seen) < 7000


def test_unreachable_address_is_exit_2_at_once(tmp_path: Path):
    """ray.init retries an unreachable --address for minutes; the driver checks it first."""
    t0 = time.perf_counter()
    res = run_cli("render", "--config", str(SMOKE), "--out", str(tmp_path / "o"), "--address", "127.0.0.1:1", *TINY)
    assert res.returncode == 2 and "cannot reach the Ray cluster at 127.0.0.1:1" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "o").exists() and time.perf_counter() - t0 < 60


# ============================================================================================
# item 3 and item 2 for `synthgen qa` and `synthgen shard`: gates bombs, full disks


def _small_store(root: Path) -> Path:
    from _shard_stores import make_synthetic_store

    return make_synthetic_store(root / "syn", subjects=("a", "b"), per_subject=3)


def test_qa_gates_bomb_is_refused_quickly_with_a_bounded_message(tmp_path: Path):
    store = _small_store(tmp_path)
    gates = tmp_path / "gates.yaml"
    gates.write_text(_bomb(9))
    t0 = time.perf_counter()
    res = run_cli("qa", str(store), "--gates", str(gates), "--out", str(tmp_path / "qa"), "--no-progress", timeout=120)
    dt = time.perf_counter() - t0
    assert res.returncode == 2, res.stderr[-2000:]
    assert str(gates) in res.stderr and "aliases" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr) < 2000 and dt < 30, (len(res.stderr), dt)  # was a 351 MB message
    # a wrong value is shown bounded too
    gates.write_text("depth_in_range:\n  min_m: [" + ", ".join(["x" * 50] * 2000) + "]\n")
    res = run_cli("qa", str(store), "--gates", str(gates), "--out", str(tmp_path / "qa"), "--no-progress", timeout=120)
    assert res.returncode == 2 and len(res.stderr) < 2000, res.stderr[-2000:]


def test_shard_and_qa_into_a_full_disk_exit_3_naming_the_path(tmp_path: Path):
    store = _small_store(tmp_path)
    with _tmpfs(tmp_path / "small", "64k") as mnt:
        out = mnt / "shards"
        res = run_cli("shard", str(store), "--out", str(out), "--split", "train=1", "--samples-per-shard", "2",
                      "--no-progress", timeout=300)
        assert res.returncode == 3, res.stdout[-2000:] + res.stderr[-2000:]
        assert "No space left on device" in res.stderr and str(mnt) in res.stderr
        assert "Traceback" not in res.stderr and "rerun the same command" in res.stderr
        assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]  # no partial shard left
        res = run_cli("qa", str(store), "--out", str(mnt / "qa"), "--no-progress", timeout=300)
        assert res.returncode == 3, res.stdout[-2000:] + res.stderr[-2000:]
        assert "No space left on device" in res.stderr and str(mnt) in res.stderr and "Traceback" not in res.stderr
