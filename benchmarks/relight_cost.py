"""CPU cost per relit sample at equal quality: separate renders vs one-pass relights (issue 16).

For view(s) of a config with ``relights_per_view: K`` (K = 1, 2, 4, 8; relight r of a view has the
same parameters whatever K is), every relight is rendered

- ``separate``: alone, at the config's default settings (today's renders), and
- ``one_pass``: all K relights of the view in one Cycles pass (``render.relight_mode: one_pass``) at
  ``render.relight_samples`` = m × n × ``render.samples`` for a few multipliers m, n the number of
  distinct lightings of the view (``render.relight_domes: true``),

and compared with a 1024-spp reference of that relight rendered alone (Blender's default bounces
and Automatic importance map, OIDN; :mod:`render_quality`'s method and cache format): PSNR (dB) of
the sRGB-encoded, auto-exposed (same subject median) image over the subject (reference mask > 0.5)
and over the frame. Cost: CPU seconds of the rendering process (``time.process_time``: every Cycles
and OIDN thread) per written sample, the subject already loaded; a one-pass view's cost is divided
by K. Peak memory: ``ru_maxrss`` of a fresh process per (lighting, mode, K).

Lightings: ``hdri`` (the config as is: every relight its own HDRI, rotation and strength),
``hdri_area`` (plus 1-2 area lights per relight), ``strength`` (one HDRI, one rotation: relights
differ in strength and exposure only).

Equal quality: the cheapest m whose PSNR over the subject, averaged over the relights, is within
0.3 dB of the separate renders' (per-relight PSNR of single renders is noisy; the spread is printed).

Usage:
    python benchmarks/relight_cost.py [--config configs/portrait.yaml] [--width 128] [--views 0]
        [--lightings hdri,hdri_area,strength] [--ks 1,2,4,8] [--mults 0.5,1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from render_quality import BLENDER_DEFAULTS, psnr  # noqa: E402

LIGHTINGS = {
    "hdri": {},
    "hdri_area": {"area_lights.count": {"dist": "choice", "values": [1, 2]},
                  "area_lights.power_w": {"dist": "uniform", "low": 20, "high": 150}},
    "strength": {"hdris.paths": ["../hdris/studio_small_03_1k.hdr"], "hdris.rotation_deg": 40.0},
}


def overrides(args, lighting: str, K: int, extra: dict | None = None) -> dict:
    return {"render.width": args.width, "render.height": args.width, "output.previews": False,
            "num_samples": (max(args.views) + 1) * 8, "render.exposure_ev": 0.0, "relights_per_view": K,
            **LIGHTINGS[lighting], **(extra or {})}


def exposed(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from synthgen.rendering.postfx import apply_exposure

    x = rgb.copy()
    apply_exposure(x, mask, True, 0.2, 0.0)
    return x


def worker(spec: dict) -> dict:
    """One (lighting, mode, K, multipliers) run in this process; returns per-sample rows."""
    from synthgen.contract import read_sample
    from synthgen.rendering.blender import BlenderRenderer
    from synthgen.rendering.config import resolve_job
    from synthgen.rendering.sampling import sample_key, sample_params
    from synthgen.rendering.worker import _lighting, render_sample

    args = argparse.Namespace(**spec["args"])
    K, lighting, mode = spec["K"], spec["lighting"], spec["mode"]
    renderer = BlenderRenderer(threads=args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="synthgen-relight-bench-"))
    refs_dir = Path(args.ref_cache) / f"{Path(args.config).stem}_{lighting}_{args.width}px_1024spp"
    rows = []
    for view in args.views:
        idx = [view * K + r for r in range(K)]
        # references: relight r of the view alone (as a relights_per_view 8 job: the same parameters)
        ref_job = resolve_job(args.config, {**overrides(args, lighting, 8), **{f"render.{k}": v for k, v in
                                            {**BLENDER_DEFAULTS, "samples": 1024, "adaptive_threshold": 0.0}.items()}})
        refs = []
        for r in range(K):
            key = sample_key(ref_job, view * 8 + r)
            if not (refs_dir / f"{key}.json").is_file():
                render_sample(renderer, ref_job, view * 8 + r, refs_dir)
            refs.append(read_sample(refs_dir, key))
        if mode == "refs":
            continue
        # warm: load the subject once (its build is not a relight's cost)
        warm = resolve_job(args.config, {**overrides(args, lighting, K), "render.samples": 1})
        render_sample(renderer, warm, idx[0], tmp / "warm")
        for m in (spec["mults"] if mode == "one_pass" else [None]):
            job = resolve_job(args.config, overrides(args, lighting, K))
            if m is not None:
                n = len({_lighting(sample_params(job, i)) for i in idx})
                job = resolve_job(args.config, overrides(args, lighting, K, {
                    "render.relight_mode": "one_pass", "render.relight_domes": True,
                    "render.relight_samples": max(1, int(round(m * n * job.config.render.samples)))}))
            out = tmp / f"{mode}_{m}"
            c0, w0 = time.process_time(), time.perf_counter()
            for i in idx:
                render_sample(renderer, job, i, out)
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            for r, i in enumerate(idx):
                s, ref = read_sample(out, sample_key(job, i)), refs[r]
                a, b = exposed(s.rgb, s.mask), exposed(ref.rgb, ref.mask)
                rows.append({"view": view, "relight": r, "m": m, "spp": s.record["render"]["settings"]["samples"],
                             "psnr_subject": psnr(a, b, ref.mask > 0.5), "psnr_frame": psnr(a, b),
                             "cpu_s": cpu / K, "wall_s": wall / K})
    return {"rows": rows, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


def run(spec: dict) -> dict:
    """:func:`worker` in a fresh process (its peak memory is its own)."""
    code = ("import json, os, sys; sys.path.insert(0, %r); import relight_cost as rc; "
            "res = rc.worker(json.loads(sys.argv[1])); print('RESULT ' + json.dumps(res)); sys.stdout.flush(); "
            "os._exit(0)") % str(ROOT / "benchmarks")
    p = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"benchmark worker failed:\n{p.stderr[-3000:]}")
    return json.loads(line[7:])


def summarise(rows: list[dict]) -> tuple[float, float, float, float, float]:
    ps = [r["psnr_subject"] for r in rows]
    return (float(np.mean([r["cpu_s"] for r in rows])), float(np.mean(ps)), float(min(ps)), float(max(ps)),
            float(np.mean([r["psnr_frame"] for r in rows])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "portrait.yaml"))
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--views", default="0")
    ap.add_argument("--lightings", default="hdri,hdri_area,strength")
    ap.add_argument("--ks", default="1,2,4,8")
    ap.add_argument("--mults", default="0.5,1", help="one-pass samples = mult × distinct lightings × render.samples")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--ref-cache", default=str(ROOT / "out" / "bench_relight_refs"))
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    args.views = [int(v) for v in args.views.split(",")]
    mults = [float(m) for m in args.mults.split(",")]
    print(f"# relight cost: {platform.node()}, {os.cpu_count()} CPUs, {args.threads} Cycles threads, "
          f"{time.strftime('%Y-%m-%d')}; {Path(args.config).name} at {args.width}x{args.width}, views {args.views}; "
          "CPU s per written sample (subject loaded); PSNR subject dB (mean [min..max] over relights), frame dB",
          flush=True)
    results = []
    spec_args = {k: v for k, v in vars(args).items() if k != "json"}
    for lighting in args.lightings.split(","):
        run({"args": spec_args, "K": max(int(k) for k in args.ks.split(",")), "lighting": lighting, "mode": "refs"})
        for K in [int(k) for k in args.ks.split(",")]:
            sep = run({"args": spec_args, "K": K, "lighting": lighting, "mode": "separate"})
            cpu_s, ps, lo, hi, pf = summarise(sep["rows"])
            print(f"{lighting:9s} K={K} separate          : {cpu_s:6.2f} CPU s/sample  PSNR {ps:5.2f} [{lo:5.2f}..{hi:5.2f}] "
                  f"frame {pf:5.2f}  peak RSS {sep['peak_rss_mb']:.0f} MiB", flush=True)
            entry = {"lighting": lighting, "K": K, "separate": sep, "one_pass": None}
            if K > 1:
                one = run({"args": spec_args, "K": K, "lighting": lighting, "mode": "one_pass", "mults": mults})
                entry["one_pass"] = one
                best = None
                for m in mults:
                    rows = [r for r in one["rows"] if r["m"] == m]
                    c, p, lo, hi, f = summarise(rows)
                    ok = p >= ps - 0.3
                    if ok and (best is None or c < best[0]):
                        best = (c, m)
                    print(f"{lighting:9s} K={K} one_pass {rows[0]['spp']:5d} spp: {c:6.2f} CPU s/sample  PSNR {p:5.2f} "
                          f"[{lo:5.2f}..{hi:5.2f}] frame {f:5.2f}  peak RSS {one['peak_rss_mb']:.0f} MiB"
                          f"{'  (equal quality)' if ok else ''}", flush=True)
                if best is None:
                    verdict = "no one-pass multiplier tried reaches equal quality"
                else:
                    x = cpu_s / best[0]
                    verdict = (f"equal quality at m = {best[1]}: " + (f"{x:.2f}x fewer" if x >= 1 else f"{1 / x:.2f}x more")
                               + " CPU s per relit sample")
                print(f"{lighting:9s} K={K} -> {verdict}", flush=True)
            results.append(entry)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    os._exit(0)  # bpy can deadlock at interpreter exit


if __name__ == "__main__":
    main()
