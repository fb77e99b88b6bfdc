"""Shared test helpers. Tests use real Blender (bpy), real Ray and real OpenEXR at tiny sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "configs" / "smoke.yaml"


def run_cli(*args: str, timeout: float = 600, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``synthgen`` console script (the real CLI, in a fresh process); ``env``
    adds to (and overrides) this process's environment."""
    exe = Path(sys.executable).with_name("synthgen")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "synthgen.cli"]
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or ROOT, env=env)


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory) -> Path:
    """The smoke job rendered once through the CLI on an embedded Ray cluster (4 samples, 64×64)."""
    out = tmp_path_factory.mktemp("smoke") / "store"
    res = run_cli("render", "--config", str(SMOKE), "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr[-4000:]
    return out


def smoke_config_copy(tmp: Path, mutate=None, **changes) -> Path:
    """Write ``tmp/job.yaml``: the smoke config with absolute asset paths (so it can live anywhere),
    top-level ``changes`` applied, then ``mutate(data)`` when given."""
    import yaml

    data = yaml.safe_load(SMOKE.read_text())
    for sc in data["scans"]:
        sc["path"] = str((SMOKE.parent / sc["path"]).resolve())
        if "texture" in sc:
            sc["texture"] = str((SMOKE.parent / sc["texture"]).resolve())
    data["hdris"]["paths"] = [str((SMOKE.parent / p).resolve()) for p in data["hdris"]["paths"]]
    data.update(changes)
    if mutate is not None:
        mutate(data)
    p = tmp / "job.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


_EXIT_STATUS = {"code": 0}


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without running C++ static destructors when bpy was loaded in this process.

    bpy 4.5's "delayed close" file thread (started e.g. by importing a .gltf with external
    images) deadlocks in its GlobalState destructor at process exit (the main thread waits in
    ``pthread_cond_destroy`` while the thread waits on the condition). pytest has printed its
    summary by now, so we flush and ``os._exit`` with pytest's own exit status.
    """
    if "bpy" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS["code"])
