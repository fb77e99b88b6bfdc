"""Friendlier runs: a quiet, still-authenticated embedded Ray cluster, and ``--dry-run`` estimates.

**Ray token authentication.** Ray (2.5x+) turns token authentication on by default for a *new* local
cluster when ``RAY_AUTH_MODE`` is unset, and says so on stderr at every start::

    WARNING authentication_token_setup.py:85 -- Token authentication is enabled for this Ray
    cluster. Set RAY_AUTH_MODE=disabled to opt out. ...

Its advice (``disabled``) removes the protection. :func:`quiet_local_ray_auth` instead states the
default explicitly, ``RAY_AUTH_MODE=token``, for the embedded local cluster only: Ray then skips
the warning ("mode set explicitly"), keeps token authentication on and, as before, creates a token
in ``~/.ray/auth_token`` when there is none. When a cluster is joined (``--address``, or
``RAY_ADDRESS`` set), or the user has set ``RAY_AUTH_MODE`` themselves, nothing is changed: the
remote cluster's authentication is the user's and Ray's business.

**Dry-run estimates.** :func:`estimate_render` predicts wall time and disk use of a render job on
this machine from measured per-sample figures: the store being resumed (its ``_meta/run.json``
and ``_meta/store.json``), else reference stores given by the caller, else a built-in table
measured on a 2-core development machine (CPU Cycles, the smoke scenes, 32x32 at 4 spp and 96x96
at 16 spp). Per sample and worker slot, with ``P = W*H*spp`` and ``N = W*H``::

    render(P) = ref_render * curve(P) / curve(P_ref) * threads_ref / threads,  curve(P) = a + b*P
    write(N)  = ref_write * (c + d*N) / (c + d*N_ref),    setup = ref_setup
    wall = startup + todo * (setup + render + write) / workers
    disk = todo * ref_bytes * (e + f*N) / (e + f*N_ref)

The curves' shapes (fixed per-sample overhead plus a part proportional to pixels x samples) come
from the built-in measurements (:data:`CURVES`); a measured store sets their level.
:func:`format_estimate` says which figures were used.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterable

AUTH_ENV = "RAY_AUTH_MODE"

BUILTIN = [
    # measured on the 2-core development machine (CPU Cycles, configs/smoke.yaml scenes, 2 workers x 1
    # thread, 4 samples each): per-sample seconds of one worker (setup, render, write), bytes per
    # sample on disk (3 EXRs + record), cluster + Blender start-up seconds
    {"width": 32, "height": 32, "spp": 4, "setup_s": 0.61, "render_s": 2.41, "write_s": 0.85,
     "bytes": 12907, "startup_s": 8.3, "threads": 1},
    {"width": 96, "height": 96, "spp": 16, "setup_s": 0.73, "render_s": 5.75, "write_s": 1.03,
     "bytes": 59579, "startup_s": 9.6, "threads": 1},
]
CURVES = {
    # fitted through the two BUILTIN rows: render = a + b * W*H*spp, write = c + d * W*H, bytes = e + f * W*H
    "render": (2.31, 2.33e-5), "write": (0.83, 2.2e-5), "bytes": (7074.0, 5.70),
}


def quiet_local_ray_auth(address: str | None = None) -> bool:
    """Before ``ray.init``: set ``RAY_AUTH_MODE=token`` for an embedded local cluster (no address, no
    ``RAY_ADDRESS``, or ``local`` as either; mode unset), which keeps Ray's default token authentication but without its
    start-up warning. Returns True when it set the variable; changes nothing when a cluster is
    joined or the user chose a mode. The variable stays set for this process (as Ray's own default
    would), so Ray's worker processes see the same mode. Works whether or not ``ray`` is imported
    already (its cached config is refreshed).
    """
    if (address not in (None, "", "local") or os.environ.get("RAY_ADDRESS", "local") not in ("", "local")
            or os.environ.get(AUTH_ENV) is not None):
        return False
    os.environ[AUTH_ENV] = "token"
    if "ray._raylet" in sys.modules:
        # Ray caches its config (auth mode included) when imported: refresh it the way Ray does when it
        # enables token auth itself (authentication_token_setup._enable_token_auth), or this process
        # would still talk to the new cluster without a token and the cluster would refuse it
        from ray._raylet import Config

        Config.initialize("")
    return True


# ----------------------------------------------------------------------------- estimates

def _reference(store: str | os.PathLike) -> dict[str, Any] | None:
    """Measured per-sample figures of a rendered store (``_meta/run.json`` + ``store.json``), or None."""
    store = Path(store)
    try:
        run = json.loads((store / "_meta" / "run.json").read_text("utf-8"))
        meta = json.loads((store / "_meta" / "store.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    n = int(run.get("written") or 0)
    r = (meta.get("config") or {}).get("render") or {}
    if n < 1 or not r.get("width"):
        return None
    t = run.get("timings") or {}
    workers = max(1, int(run.get("workers") or 1))
    busy = sum(float(t.get(k, 0.0)) for k in ("setup_s", "render_s", "write_s"))
    sizes = []
    for p in sorted(store.glob("*.json"))[:200]:
        try:
            rec = json.loads(p.read_text("utf-8"))
            sizes.append(p.stat().st_size + sum(int(f.get("bytes", 0)) for f in (rec.get("files") or {}).values()))
        except (OSError, ValueError, AttributeError):
            continue
    return {"width": int(r["width"]), "height": int(r["height"]), "spp": int(r.get("samples") or 1),
            "setup_s": float(t.get("setup_s", 0.0)) / n, "render_s": float(t.get("render_s", 0.0)) / n,
            "write_s": float(t.get("write_s", 0.0)) / n, "bytes": sum(sizes) / len(sizes) if sizes else None,
            "startup_s": max(0.0, float(run.get("wall_s", 0.0)) - busy / workers),
            "threads": int(run.get("threads_per_worker") or 1), "source": str(store), "samples": n}


def _job_numbers(cfg: dict[str, Any]) -> dict[str, Any]:
    r = cfg.get("render") or {}
    return {"width": int(r.get("width", 512)), "height": int(r.get("height", 512)), "spp": int(r.get("samples", 64)),
            "threads": int(r.get("threads_per_worker", 1)), "workers": cfg.get("workers")}


def estimate_render(cfg: dict[str, Any], out_dir: str | os.PathLike | None = None, todo: int | None = None,
                    references: Iterable[str | os.PathLike] = (), cpus: int | None = None,
                    workers: int | None = None) -> dict[str, Any]:
    """Estimate wall time and disk use of rendering ``todo`` samples of job config ``cfg`` here.

    Args:
        cfg: the job config as a dict (``job.config.model_dump(mode="json")``).
        out_dir: the output store; when it holds an earlier run of a job, its figures are used first.
        todo: samples to render (default ``cfg["num_samples"]``).
        references: other rendered stores to measure from (first usable one wins).
        cpus: CPUs for workers (default ``os.cpu_count()``).
        workers: worker slots (default: ``--workers``/config ``workers``, else cpus // threads).

    Returns:
        ``{"samples", "workers", "seconds", "bytes", "per_sample_s", "method", "basis"}``.
    """
    job = _job_numbers(cfg)
    n = int(cfg.get("num_samples", 0) if todo is None else todo)
    cpus = cpus or os.cpu_count() or 1
    slots = max(1, int(workers or job["workers"] or max(1, cpus // max(1, job["threads"]))))
    ref, method = None, None
    for cand in ([out_dir] if out_dir else []) + list(references):
        ref = _reference(cand)
        if ref is not None:
            method = f"measured: {ref['samples']} samples of {ref['width']}x{ref['height']} at {ref['spp']} spp in {cand}"
            break
    if ref is None:
        p = job["width"] * job["height"] * job["spp"]
        ref = min(BUILTIN, key=lambda b: abs(math.log(b["width"] * b["height"] * b["spp"] / p)))
        method = (f"built-in table (2-core development machine, CPU Cycles): nearest entry "
                  f"{ref['width']}x{ref['height']} at {ref['spp']} spp; no rendered store to measure from")
    px, px0 = job["width"] * job["height"], ref["width"] * ref["height"]
    per = (ref["setup_s"]
           + ref["render_s"] * _ratio("render", px * job["spp"], px0 * ref["spp"]) * ref["threads"] / max(1, job["threads"])
           + ref["write_s"] * _ratio("write", px, px0))
    seconds = ref["startup_s"] + n * per / slots
    nbytes = None if ref.get("bytes") is None else n * ref["bytes"] * _ratio("bytes", px, px0)
    return {"samples": n, "workers": slots, "seconds": seconds, "bytes": nbytes, "per_sample_s": per,
            "method": method, "basis": {k: ref.get(k) for k in ("width", "height", "spp", "setup_s", "render_s",
                                                               "write_s", "bytes", "startup_s", "threads")},
            "model": "per sample: setup + render scaled by (a + b*W*H*spp) + write scaled by (c + d*W*H); "
                     "wall = startup + samples * per-sample / workers; disk scaled by (e + f*W*H)"}


def _ratio(curve: str, x: float, x_ref: float) -> float:
    a, b = CURVES[curve]
    return (a + b * x) / (a + b * x_ref)


def human_bytes(n: float | None) -> str:
    """Bytes as text in SI units (1 KB = 1000 B): ``"512 B"``, ``"3.4 MB"``; None -> ``"unknown"``."""
    if n is None:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} PB"


def _human_s(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def format_estimate(est: dict[str, Any]) -> str:
    """One comment line for ``--dry-run`` output, saying how the estimate was made."""
    return (f"# estimate: {est['samples']} samples on {est['workers']} worker(s): about "
            f"{_human_s(est['seconds'])} wall ({est['per_sample_s']:.1f} s per sample per worker) and "
            f"{human_bytes(est['bytes'])} on disk; {est['method']}; model: {est['model']}")
