"""The cluster launchers in configs/cluster/, run for real where this machine allows it.

* SLURM: a single-node SLURM cluster (munge, slurmctld, slurmd; configs/cluster/slurm_local.sh)
  is installed and started once per session; the shipped slurm_render.sbatch is submitted with
  only its documented variables and #SBATCH defaults overridden, then cancelled and resubmitted.
* Ray Jobs: a local Ray head with its dashboard; `ray job submit ... -- synthgen render --address
  auto` as the README documents.
* KubeRay: rayjob.yaml against the RayJob CRD schema (when the CRD is vendored in
  tests/fixtures/kuberay/) and against what `synthgen render` and the Dockerfile provide.

Every process a job starts inherits a unique tag in its environment; "the job's Ray is gone" is
checked by reading /proc/*/environ for it (Ray workers rewrite their command line, so names and
arguments are not enough), which also leaves other Ray clusters on the machine alone.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from synthgen.contract import list_keys, verify_sample

from conftest import ROOT, SMOKE, run_cli

CLUSTER = ROOT / "configs" / "cluster"
SBATCH = CLUSTER / "slurm_render.sbatch"
SLURM_LOCAL = CLUSTER / "slurm_local.sh"
RAYJOB = CLUSTER / "rayjob.yaml"
DOCKERFILE = CLUSTER / "Dockerfile"
CRD = ROOT / "tests" / "fixtures" / "kuberay" / "ray.io_rayjobs.yaml"
VENV = Path(sys.prefix)  # the venv running the tests: synthgen, ray and bpy are installed there
TINY = ["--set", "render.width=32", "--set", "render.height=32", "--set", "render.samples=1"]
TAG_VAR = "SYNTHGEN_CLUSTER_TEST_TAG"
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


_taken: set[int] = set()


def _free_port() -> int:
    """A port that is free now, from 20000-32767: above Ray's worker ports (10002-19999) and below
    Linux's ephemeral range (32768-60999). A port from ``bind(("", 0))`` is ephemeral, and the
    outgoing connections of the Ray processes started meanwhile may take it first (a CI run lost
    its dashboard port that way)."""
    rng = random.Random()
    while True:
        port = rng.randrange(20000, 32768)
        if port in _taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _taken.add(port)
        return port


def _stop_tagged(tag: str) -> None:
    """SIGKILL every live process tagged ``tag`` and wait (up to 30 s) until they are gone."""
    for pid in _tagged_processes(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    t0 = time.time()
    while _tagged_processes(tag) and time.time() - t0 < 30:
        time.sleep(0.2)


def _tagged_processes(tag: str) -> dict[int, str]:
    """pid -> name of every live process whose environment carries ``TAG_VAR=tag``."""
    needle = f"{TAG_VAR}={tag}".encode()
    found = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            if needle in (p / "environ").read_bytes().split(b"\0"):
                found[int(p.name)] = (p / "comm").read_text().strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _events(store: Path) -> list[dict]:
    p = store / "_meta" / "ledger.jsonl"
    if not p.exists():
        return []
    return [json.loads(ln) for ln in p.read_text().splitlines() if ln.endswith("}")]


def _runs(events: list[dict]) -> list[list[dict]]:
    """The ledger split into runs (each starting with its run_start event)."""
    runs: list[list[dict]] = []
    for e in events:
        if e["event"] == "run_start":
            runs.append([])
        if runs:
            runs[-1].append(e)
    return runs


def _assert_store_complete(store: Path, keys: list[str]) -> None:
    assert list_keys(store) == keys
    for k in keys:
        assert verify_sample(store, k) == [], k
    assert not list(store.glob(".tmp-*")) and not list((store / "_meta").rglob(".tmp-*"))


# --------------------------------------------------------------------------------------------
# SLURM


@pytest.fixture(scope="session")
def slurm(tmp_path_factory) -> dict[str, str]:
    """A single-node SLURM cluster on this machine: the environment for sbatch/scontrol.

    Started (and apt-installed) by configs/cluster/slurm_local.sh; reused when already running.
    This session holds a lease on it (its pid): at the end of the session the daemons stop unless
    another live test session holds a lease too, or they were started by hand (a plain `up`).
    Skipped with the reason where it cannot start (not root, no apt-get).
    """
    if os.name != "posix" or not Path("/proc").is_dir():
        pytest.skip("SLURM: needs Linux")
    if os.geteuid() != 0:
        pytest.skip("SLURM: needs root to install and start munged, slurmctld and slurmd")
    res = subprocess.run(["bash", str(SLURM_LOCAL), "up", str(os.getpid())], capture_output=True, text=True,
                         timeout=900)
    if res.returncode == 3:
        pytest.skip("SLURM: " + (res.stderr.strip().splitlines() or ["cannot start"])[-1])
    assert res.returncode == 0, f"slurm_local.sh up failed:\n{res.stdout}\n{res.stderr[-4000:]}"
    conf = re.search(r"^export SLURM_CONF=(\S+)$", res.stdout, re.M).group(1)
    yield dict(os.environ, SLURM_CONF=conf)
    subprocess.run(["bash", str(SLURM_LOCAL), "down", str(os.getpid())], capture_output=True, text=True,
                   timeout=120)


class Submitted(NamedTuple):
    job: str
    port: int  # the job's Ray GCS port
    ray_tmpdir: Path  # where the script puts the job's Ray temp dir (its default)


def _sbatch(env: dict[str, str], store: Path, num_samples: int, log_dir: Path, tag: str,
            *render_args: str) -> Submitted:
    """Submit the shipped sbatch script: #SBATCH defaults and documented variables overridden on
    the command line, extra arguments passed through to ``synthgen render``."""
    port = _free_port()
    job_env = dict(env, SYNTHGEN_VENV=str(VENV), RAY_PORT=str(port), **{TAG_VAR: tag},
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    # the script's defaults: token auth with a fresh token for the job (what users get), and a
    # Ray temp dir of the job's own
    for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_TMPDIR", "RAY_ADDRESS"):
        job_env.pop(var, None)
    cpus = min(2, os.cpu_count() or 1)
    cmd = ["sbatch", "--parsable", "--nodes=1", f"--cpus-per-task={cpus}", "--mem=4G",
           f"--output={log_dir}/slurm-%j.log",
           f"--export=ALL,OUT={store},CONFIG={SMOKE},NUM_SAMPLES={num_samples}",
           str(SBATCH), *TINY, *render_args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=job_env, cwd=ROOT, timeout=60)
    assert res.returncode == 0, res.stderr
    job = res.stdout.strip().split(";")[0]
    return Submitted(job, port, Path(job_env.get("TMPDIR", "/tmp")) / f"synthgen-ray-{job}")


def _assert_private_ray_address(sub: Submitted) -> None:
    """The job's `ray start` recorded its address in the job's own Ray temp dir, not in the
    machine-wide /tmp/ray/ray_current_cluster, where a stale address makes every later plain
    ``ray.init()`` on the machine (synthgen render without --address, other tests) hang."""
    own = sub.ray_tmpdir / "ray" / "ray_current_cluster"
    assert own.read_text().strip().endswith(f":{sub.port}"), own
    shared = Path("/tmp/ray/ray_current_cluster")
    assert not (shared.exists() and shared.read_text().strip().endswith(f":{sub.port}"))
    shutil.rmtree(sub.ray_tmpdir, ignore_errors=True)


def _job_info(env: dict[str, str], job: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, env=env,
                         timeout=60).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def _wait_job(env: dict[str, str], job: str, log: Path, timeout: float = 400) -> dict[str, str]:
    """Poll ``scontrol show job`` (no accounting database here, so no sacct) until the job ends."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        info = _job_info(env, job)
        if info.get("JobState") in FINAL_STATES:
            return info
        time.sleep(1)
    subprocess.run(["scancel", job], env=env, timeout=60)
    raise AssertionError(f"job {job} still {info.get('JobState')} after {timeout} s:\n"
                         f"{log.read_text()[-4000:] if log.exists() else '(no log)'}")


def _log(log_dir: Path, job: str) -> str:
    return (log_dir / f"slurm-{job}.log").read_text()


def _assert_ray_gone(tag: str, ledger: list[dict], log: str) -> None:
    """Nothing the job started is alive: no tagged process (raylet, gcs_server, workers, driver),
    and none of the render actors' pids recorded in the ledger."""
    left = _tagged_processes(tag)
    assert not left, f"processes of the job still running: {left}\n{log[-3000:]}"
    for pid in {e["pid"] for e in ledger if e["event"] == "worker_start"}:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        assert b"ray::" not in cmd and b"default_worker" not in cmd, f"render worker {pid} alive"


@pytest.mark.slow
def test_slurm_sbatch_renders_complete_store(slurm, tmp_path: Path):
    store, tag = tmp_path / "store", uuid.uuid4().hex
    sub = _sbatch(slurm, store, 4, tmp_path, tag)
    job = sub.job
    info = _wait_job(slurm, job, tmp_path / f"slurm-{job}.log")
    log = _log(tmp_path, job)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", log[-4000:]
    keys = [f"smoke_s7_{i:06d}" for i in range(4)]
    _assert_store_complete(store, keys)
    assert "wrote 4 samples" in log and "0 failed" in log
    assert f"slurm_render: job {job} (restart 0) on" in log and "slurm_render: exit 0; Ray stopped" in log
    ev = _events(store)
    assert sorted(e["key"] for e in ev if e["event"] == "sample_done") == keys
    _assert_ray_gone(tag, ev, log)
    _assert_private_ray_address(sub)


@pytest.mark.slow
def test_slurm_scancel_then_resubmit_resumes_without_duplicates(slurm, tmp_path: Path):
    """scancel mid-run, then the same submission again.

    What is asserted about duplicates, and why: a worker writes a sample atomically (members,
    then KEY.json) *before* returning its record, and the driver logs ``sample_done`` only on
    receiving that record. So every key logged as done by job 1 is complete on disk, and job 2,
    which skips complete samples, never renders it again: each key has at most one
    ``sample_done`` across both jobs. A key can have none: a worker that finishes writing while
    job 1's driver is already stopping leaves a complete sample whose record nobody logged; job 2
    counts it as already complete. Precisely: done(job 1) is a subset of complete(after job 1),
    done(job 2) == planned - complete(after job 1), and the two are disjoint; samples complete
    after job 1 are not rewritten (same KEY.json mtime).
    """
    store, n = tmp_path / "store", 16
    keys = [f"smoke_s7_{i:06d}" for i in range(n)]
    tag1 = uuid.uuid4().hex
    # one worker (--workers is a run-only setting: the same job for both submissions), so the
    # cancel lands well before the 16 samples are done even on a fast machine
    sub1 = _sbatch(slurm, store, n, tmp_path, tag1, "--workers", "1")
    job1 = sub1.job
    log1 = tmp_path / f"slurm-{job1}.log"
    t0 = time.time()
    while not any(e["event"] == "sample_done" for e in _events(store)):
        state = _job_info(slurm, job1).get("JobState")
        assert state in ("PENDING", "CONFIGURING", "RUNNING"), f"job {job1} {state}:\n{log1.read_text()[-4000:]}"
        assert time.time() - t0 < 300, f"no sample after 300 s:\n{log1.read_text()[-4000:]}"
        time.sleep(0.2)
    running = set(_tagged_processes(tag1).values())
    assert {"raylet", "gcs_server"} <= running, running  # the tag does find the job's Ray
    subprocess.run(["scancel", job1], env=slurm, check=True, timeout=60)
    info1 = _wait_job(slurm, job1, log1)
    text1 = log1.read_text()
    assert info1["JobState"] == "CANCELLED", text1[-4000:]
    ev1 = _events(store)
    _assert_ray_gone(tag1, ev1, text1)
    _assert_private_ray_address(sub1)
    # the driver got SIGTERM, stopped its workers and recorded the interrupted run
    (run1,) = _runs(ev1)
    assert run1[-1]["event"] == "run_end" and run1[-1]["status"] == "interrupted", text1[-4000:]
    assert "synthgen render: interrupted" in text1
    complete1 = set(list_keys(store))
    assert all(verify_sample(store, k) == [] for k in complete1)  # no partial sample
    assert not list(store.glob(".tmp-*"))
    done1 = [e["key"] for e in run1 if e["event"] == "sample_done"]
    assert 1 <= len(done1) and set(done1) <= complete1 and len(complete1) < n, (done1, complete1)
    mtimes = {k: (store / f"{k}.json").stat().st_mtime_ns for k in complete1}

    tag2 = uuid.uuid4().hex
    sub2 = _sbatch(slurm, store, n, tmp_path, tag2, "--workers", "1")
    job2 = sub2.job
    info2 = _wait_job(slurm, job2, tmp_path / f"slurm-{job2}.log")
    text2 = _log(tmp_path, job2)
    assert info2["JobState"] == "COMPLETED" and info2["ExitCode"] == "0:0", text2[-4000:]
    _assert_store_complete(store, keys)
    ev = _events(store)
    _assert_ray_gone(tag2, ev, text2)
    _assert_private_ray_address(sub2)
    run1_again, run2 = _runs(ev)
    assert run1_again == run1
    assert run2[0]["skipped"] == len(complete1) and run2[0]["todo"] == n - len(complete1)
    done2 = [e["key"] for e in run2 if e["event"] == "sample_done"]
    assert sorted(done2) == sorted(set(keys) - complete1)
    counts = collections.Counter(done1 + done2)
    assert max(counts.values()) == 1, [k for k, c in counts.items() if c > 1]
    assert {k: (store / f"{k}.json").stat().st_mtime_ns for k in complete1} == mtimes
    assert f"{len(complete1)} already complete (skipped)" in text2 and "0 failed" in text2


def test_slurm_script_is_valid_bash():
    for script in (SBATCH, SLURM_LOCAL):
        res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
    # the #SBATCH defaults the docs tell users to override are there
    head = SBATCH.read_text()
    for opt in ("--nodes=", "--cpus-per-task=", "--mem=", "--time=", "--output=", "--requeue", "--open-mode=append"):
        assert f"#SBATCH {opt}" in head, opt


# --------------------------------------------------------------------------------------------
# Ray Jobs API


@pytest.mark.slow
def test_ray_job_submit_renders_complete_store(tmp_path: Path, monkeypatch):
    """`ray job submit -- synthgen render --address auto` against a local head, as the README says."""
    tag = uuid.uuid4().hex
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1", **{TAG_VAR: tag},
               RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
               # the entrypoint runs in the raylet's environment: synthgen must be on its PATH
               PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("RAY_ADDRESS", None)
    ray = str(VENV / "bin" / "ray")
    store = tmp_path / "store"
    head = None
    try:
        for attempt in range(3):  # a port taken between our check and Ray's bind: start again on new ports
            # a Ray temp dir of its own (short: Ray's unix socket paths live under it): `ray start`
            # records its address there, not in /tmp/ray/ray_current_cluster, whose stale address
            # would make every later plain ray.init() on the machine hang
            ray_tmp = Path(tempfile.mkdtemp(prefix="sg-rayjob-", dir="/tmp"))
            env["RAY_TMPDIR"] = str(ray_tmp)
            gcs, dash, client, agent = (_free_port() for _ in range(4))
            head_log = tmp_path / f"head{attempt}.log"
            # --block: the head lives in this process tree and is stopped by SIGTERM below; `ray
            # stop` would stop every Ray on the machine, other test runs' included
            with open(head_log, "w") as log:
                head = subprocess.Popen(
                    [ray, "start", "--head", f"--port={gcs}", "--num-cpus=2", "--include-dashboard=true",
                     f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
                     f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
                     "--disable-usage-stats", "--block"],
                    stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
            address = f"http://127.0.0.1:{dash}"
            t0 = time.time()
            while head.poll() is None:  # the job server answers once the dashboard is up
                try:
                    with urllib.request.urlopen(f"{address}/api/version", timeout=5):
                        break
                except OSError:
                    pass
                assert time.time() - t0 < 180, "Ray dashboard did not come up"
                time.sleep(0.5)
            if head.poll() is None:
                break
            _stop_tagged(tag)
        assert head.poll() is None, head_log.read_text()[-3000:]
        sub = f"synthgen-{tag[:8]}"
        res = subprocess.run([ray, "job", "submit", "--address", address, "--submission-id", sub, "--",
                              "synthgen", "render", "--config", str(SMOKE), "--address", "auto",
                              "--out", str(store), "--no-progress", *TINY],
                             capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
        from ray.job_submission import JobStatus, JobSubmissionClient  # HTTP client, no ray.init

        monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # as the head
        jobs = JobSubmissionClient(address)
        status = jobs.get_job_status(sub)
        assert status == JobStatus.SUCCEEDED, f"{status}\n{res.stdout[-4000:]}{res.stderr[-2000:]}"
        assert res.returncode == 0
        logs = jobs.get_job_logs(sub)
        assert "wrote 4 samples" in logs and "0 failed" in logs, logs[-3000:]
        keys = [f"smoke_s7_{i:06d}" for i in range(4)]
        _assert_store_complete(store, keys)
        ev = _events(store)
        assert sorted(e["key"] for e in ev if e["event"] == "sample_done") == keys
    finally:
        if head is not None and head.poll() is None:
            head.send_signal(signal.SIGTERM)
            try:
                head.wait(timeout=60)
            except subprocess.TimeoutExpired:
                head.kill()
                head.wait()
        t0 = time.time()
        while _tagged_processes(tag) and time.time() - t0 < 30:  # raylet children exit after it
            time.sleep(0.5)
        left = _tagged_processes(tag)
        _stop_tagged(tag)  # never leave a Ray process behind for later tests, pass or fail
    assert not left, left
    assert (ray_tmp / "ray" / "ray_current_cluster").read_text().strip().endswith(f":{gcs}")
    shared = Path("/tmp/ray/ray_current_cluster")
    assert not (shared.exists() and shared.read_text().strip().endswith(f":{gcs}"))
    shutil.rmtree(ray_tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# KubeRay


def _rayjob() -> dict:
    return yaml.safe_load(RAYJOB.read_text())


def _strict(schema):
    """The CRD schema with unknown fields refused, as `kubectl apply --validate=strict` does (the
    API server would otherwise silently drop a misspelt field): every object schema that lists
    ``properties`` and neither ``additionalProperties`` nor x-kubernetes-preserve-unknown-fields
    gets ``additionalProperties: false``."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def test_rayjob_validates_against_kuberay_crd():
    if not CRD.exists():
        pytest.skip(f"KubeRay RayJob CRD not vendored at {CRD.relative_to(ROOT)} "
                    "(see tests/fixtures/kuberay/README.md for where to get it)")
    import jsonschema

    crd = yaml.safe_load(CRD.read_text())
    assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == "RayJob"
    doc = _rayjob()
    group, version = doc["apiVersion"].split("/")
    assert group == crd["spec"]["group"]
    served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    assert version in served, f"{doc['apiVersion']} is not served by this CRD ({sorted(served)})"
    schema = _strict(served[version]["schema"]["openAPIV3Schema"])
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def _dockerfile() -> dict:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    ins = [(m.group(1).upper(), m.group(2).strip())
           for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, re.M) if not m.group(0).lstrip().startswith("#")]
    workdir = next(v for k, v in ins if k == "WORKDIR")
    copies = {}
    for k, v in ins:
        if k == "COPY":
            *srcs, dst = v.split()
            for s in srcs:
                copies[s.rstrip("/")] = str(Path(workdir) / dst) if not dst.startswith("/") else dst
    args = dict(v.split("=", 1) for k, v in ins if k == "ARG" and "=" in v)
    return {"ins": ins, "workdir": workdir, "copies": copies, "args": args}


def test_rayjob_entrypoint_volume_and_gpu_group_fit_synthgen(tmp_path: Path):
    from synthgen.cli import build_parser

    doc = _rayjob()
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    spec = doc["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["synthgen", "render"], argv
    args = build_parser().parse_args(argv[1:])  # exits (SystemExit) on an unknown flag
    assert args.address == "auto" and args.out and args.config and args.no_progress
    # every flag is one `synthgen render --help` documents
    help_text = run_cli("render", "--help").stdout
    for flag in (a for a in argv if a.startswith("--")):
        assert flag in help_text, flag

    # the image: WORKDIR, what it copies, Ray pinned to the cluster's rayVersion, no ENTRYPOINT
    df = _dockerfile()
    assert not any(k == "ENTRYPOINT" for k, _ in df["ins"]), "KubeRay runs `ray start` in the container"
    assert df["args"].get("RAY_VERSION") == spec["rayClusterSpec"]["rayVersion"]
    image_root = Path(df["workdir"])
    config_in_image = Path(args.config)
    rel = config_in_image.relative_to(image_root)  # the config is one the image ships
    assert rel.parts[0] in df["copies"] and (ROOT / rel).is_file(), rel
    # every file the job reads (scans, textures, normal maps, HDRIs) is copied into the image too
    dry = run_cli("render", "--config", str(ROOT / rel), "--dry-run", "--out", str(tmp_path / "o"))
    assert dry.returncode == 0, dry.stderr
    resolved = yaml.safe_load(dry.stdout.split("\n# dry run")[0])

    def strings(d):
        if isinstance(d, dict):
            for v in d.values():
                yield from strings(v)
        elif isinstance(d, list):
            for v in d:
                yield from strings(v)
        elif isinstance(d, str):
            yield d

    files = {(ROOT / rel).parent.joinpath(v).resolve() for v in strings(resolved) if "/" in v}
    files = [f for f in files if f.is_file() and f.is_relative_to(ROOT)]
    assert len(files) >= 4, files  # scans and HDRIs at least
    for f in files:
        top = f.relative_to(ROOT).parts[0]
        assert top in df["copies"], f"{f}: its folder {top}/ is not copied into the image"

    # the shared output volume: --out lies under the same PVC mount on the head and every worker
    rc = spec["rayClusterSpec"]
    groups = [("head", rc["headGroupSpec"])] + [(g["groupName"], g) for g in rc["workerGroupSpecs"]]
    out = Path(args.out)
    claims = set()
    for name, g in groups:
        pod = g["template"]["spec"]
        vols = {v["name"]: v for v in pod["volumes"]}
        (c,) = pod["containers"]
        mounts = [m for m in c.get("volumeMounts", []) if out.is_relative_to(m["mountPath"])]
        assert mounts, f"{name}: --out {out} is on no volume mount"
        m = max(mounts, key=lambda m: len(m["mountPath"]))
        assert out.parent == Path(m["mountPath"]) and not m.get("readOnly"), (name, m)
        claims.add(vols[m["name"]]["persistentVolumeClaim"]["claimName"])
        assert c["image"] == pod["containers"][0]["image"]
    assert len(claims) == 1, f"head and workers must share one volume: {claims}"
    assert len({g["template"]["spec"]["containers"][0]["image"] for _, g in groups}) == 1

    # the head only schedules; CPU workers: CPUs from the pod limit, enough memory per worker
    assert rc["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0"

    def gib(q: str) -> float:
        units = {"Ki": 2**-20, "Mi": 2**-10, "Gi": 1, "Ti": 2**10}
        m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti)?", str(q))
        return float(m.group(1)) * units.get(m.group(2), 2**-30)

    workers = {g["groupName"]: g for g in rc["workerGroupSpecs"]}
    cpu_res = workers["cpu-render"]["template"]["spec"]["containers"][0]["resources"]
    assert cpu_res["requests"] == cpu_res["limits"]
    assert gib(cpu_res["limits"]["memory"]) / float(cpu_res["limits"]["cpu"]) >= 1.5  # GiB per 1-CPU worker
    # the GPU group: one GPU per pod, advertised to Ray as num-gpus (synthgen: one worker per GPU)
    gpu = workers["gpu-render"]
    gpu_res = gpu["template"]["spec"]["containers"][0]["resources"]
    n_gpu = int(gpu_res["limits"]["nvidia.com/gpu"])
    assert n_gpu >= 1 and gpu_res["requests"].get("nvidia.com/gpu") == gpu_res["limits"]["nvidia.com/gpu"]
    assert gpu["rayStartParams"].get("num-gpus") == str(n_gpu)
    assert float(gpu_res["limits"]["cpu"]) >= 1 and gib(gpu_res["limits"]["memory"]) / n_gpu >= 1.5
    for g in workers.values():
        assert 0 <= g.get("minReplicas", 0) <= g["replicas"] <= g["maxReplicas"]
    # the GPU switch the comment documents is a valid override
    gpu_args = build_parser().parse_args(argv[1:] + ["--set", "render.device=gpu"])
    assert gpu_args.set == ["render.device=gpu"]
    dry = run_cli("render", "--config", str(ROOT / rel), "--dry-run", "--out", str(tmp_path / "g"),
                  "--set", "render.device=gpu")
    assert dry.returncode == 0 and "device: gpu" in dry.stdout, dry.stderr
