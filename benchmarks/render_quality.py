"""Quality per second of Cycles settings for portraits, judged by PSNR against a reference (issue 3).

For a few samples of a config, every candidate setting renders the very same sample (same key: same
scan, camera, HDRI, pose, Cycles seed) and is compared with a high-sample reference render of that
sample (``--reference-spp`` samples, no adaptive sampling, Blender's default bounce limits, OIDN),
i.e. what ``synthgen render --only KEY --set render.samples=1024 ...`` produces.

Image quality: PSNR (dB) of the display-referred image: the stored linear RGB (already auto-exposed
to the same subject median luminance) clipped to [0, 1] and encoded with the sRGB transfer function
(IEC 61966-2-1), over the subject (reference mask > 0.5) and over the whole frame.
Cost: CPU seconds of the rendering process per sample (``time.process_time``, which counts every
Cycles thread), so the figures hold on a busy machine too; wall seconds are printed beside.

Candidates: Blender's defaults at the config's samples per pixel (what a hand-written script gets:
adaptive threshold 0.01, 12 bounces, Automatic HDRI importance map), the previous synthgen defaults,
and a grid over samples, adaptive threshold and bounce limits with a 1024 Manual importance map.
``--persistent`` also compares Cycles persistent data on and off over consecutive samples.

Usage:
    python benchmarks/render_quality.py [--config configs/portrait.yaml] [--indices 0,5,9]
        [--width 256] [--reference-spp 1024] [--persistent]
Prints one line per candidate (CPU s/sample, wall s, PSNR subject / frame) and the cheapest
candidate that is at least as good as each baseline, with its speed-up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from synthgen.rendering.config import resolve_job
from synthgen.contract import read_sample
from synthgen.rendering.sampling import sample_key

ROOT = Path(__file__).resolve().parent.parent

BLENDER_DEFAULTS = {"adaptive_threshold": 0.01, "max_bounces": 12, "diffuse_bounces": 4, "glossy_bounces": 4,
                    "transmission_bounces": 12, "transparent_bounces": 8, "env_map_resolution": 0,
                    "denoise": True, "denoiser_prepass": "albedo_normal", "denoiser_prefilter": "accurate",
                    "denoiser_quality": "high", "clamp_indirect": 10.0, "light_tree": True}
PORTRAIT_PATHS = {"max_bounces": 4, "diffuse_bounces": 2, "glossy_bounces": 2, "transmission_bounces": 2,
                  "transparent_bounces": 4}


def candidates(spp: int) -> dict[str, dict]:
    c = {
        f"blender_defaults_{spp}spp": {**BLENDER_DEFAULTS, "samples": spp},
        f"synthgen_v0_{spp}spp": {"samples": spp, "adaptive_threshold": 0.02, "max_bounces": 6,
                                  "env_map_resolution": 0, "denoiser_prefilter": "accurate"},
        f"synthgen_v1_{spp}spp": {"samples": spp, "adaptive_threshold": 0.02, "max_bounces": 6,
                                  "env_map_resolution": 1024, "denoiser_prefilter": "none"},
    }
    acc = {"denoiser_prefilter": "accurate"}
    for s in (8, 16, 32, 64):
        for thr in (0.02, 0.05):
            c[f"map1024_b6_t{thr}_{s}spp"] = {"samples": s, "adaptive_threshold": thr, "max_bounces": 6,
                                              "env_map_resolution": 1024, **acc}
            c[f"map1024_portrait_t{thr}_{s}spp"] = {"samples": s, "adaptive_threshold": thr,
                                                    "env_map_resolution": 1024, **PORTRAIT_PATHS, **acc}
    c["map256_portrait_t0.05_16spp"] = {"samples": 16, "adaptive_threshold": 0.05, "env_map_resolution": 256,
                                        **PORTRAIT_PATHS, **acc}
    c["map1024_portrait_t0.05_16spp_albedo"] = {"samples": 16, "adaptive_threshold": 0.05,
                                                "env_map_resolution": 1024, "denoiser_prepass": "albedo",
                                                **PORTRAIT_PATHS, **acc}
    c["map1024_portrait_t0.05_16spp_notree"] = {"samples": 16, "adaptive_threshold": 0.05,
                                                "env_map_resolution": 1024, "light_tree": False,
                                                **PORTRAIT_PATHS, **acc}
    for pf in ("fast", "none"):
        c[f"map1024_b6_t0.02_64spp_prefilter_{pf}"] = {"samples": 64, "adaptive_threshold": 0.02, "max_bounces": 6,
                                                       "env_map_resolution": 1024, "denoiser_prefilter": pf}
    c["map1024_b6_t0.02_64spp_balanced"] = {"samples": 64, "adaptive_threshold": 0.02, "max_bounces": 6,
                                            "env_map_resolution": 1024, "denoiser_quality": "balanced", **acc}
    return c


def srgb(x: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB encoding of linear values clipped to [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def psnr(a: np.ndarray, b: np.ndarray, sel: np.ndarray | None = None) -> float:
    d = (srgb(a) - srgb(b)) ** 2
    mse = float(d[sel].mean() if sel is not None else d.mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def render_one(renderer, config: str, base: dict, settings: dict, index: int, out: Path):
    from synthgen.rendering.worker import render_sample

    job = resolve_job(config, {**base, **{f"render.{k}": v for k, v in settings.items()}})
    c0, w0 = time.process_time(), time.perf_counter()
    res = render_sample(renderer, job, index, out)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    s = read_sample(out, res["key"])
    return s, cpu, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "portrait.yaml"))
    ap.add_argument("--indices", default="0,5,9", help="sample indices to judge (comma-separated)")
    ap.add_argument("--width", type=int, default=256, help="render width = height in pixels")
    ap.add_argument("--spp", type=int, default=64, help="samples per pixel of the baselines")
    ap.add_argument("--reference-spp", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--only", help="comma-separated candidate names to run (default: all)")
    ap.add_argument("--persistent", action="store_true", help="also time persistent data on/off")
    ap.add_argument("--ref-cache", default=str(ROOT / "out" / "bench_quality_refs"),
                    help="folder keeping reference renders between runs (a sample store)")
    ap.add_argument("--candidate", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                    help="an extra candidate of render.* settings, e.g. fast:samples=32,denoiser_prefilter=fast")
    args = ap.parse_args()
    from synthgen.rendering.blender import BlenderRenderer

    indices = [int(x) for x in args.indices.split(",")]
    base = {"render.width": args.width, "render.height": args.width, "output.previews": False,
            "num_samples": max(indices) + 1, "render.exposure_ev": 0.0}
    renderer = BlenderRenderer(threads=args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="synthgen-quality-"))
    print(f"machine: {os.cpu_count()} CPUs, {args.threads} Cycles threads; {Path(args.config).name} at "
          f"{args.width}x{args.width}; samples {indices}; reference {args.reference_spp} spp", flush=True)
    try:
        refs = {}
        ref_settings = {**BLENDER_DEFAULTS, "samples": args.reference_spp, "adaptive_threshold": 0.0}
        ref_dir = Path(args.ref_cache) / f"{Path(args.config).stem}_{args.width}px_{args.reference_spp}spp"
        for i in indices:
            job = resolve_job(args.config, base)
            key = sample_key(job, i)
            if (ref_dir / f"{key}.json").is_file():
                refs[i] = read_sample(ref_dir, key)
                print(f"reference {key}: cached in {ref_dir}", flush=True)
                continue
            s, cpu, wall = render_one(renderer, args.config, base, ref_settings, i, ref_dir)
            refs[i] = s
            print(f"reference {s.key}: {cpu:.1f} CPU s, {wall:.1f} s", flush=True)
        cands = candidates(args.spp)
        import yaml

        if args.only:
            cands = {k: v for k, v in cands.items() if k in args.only.split(",")}
        for c in args.candidate:  # always run
            name, _, kvs = c.partition(":")
            cands[name] = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in kvs.split(","))}
        rows = []
        for name, st in cands.items():
            cpus, walls, ps, pf = [], [], [], []
            for i in indices:
                s, cpu, wall = render_one(renderer, args.config, base, st, i, tmp / name)
                ref = refs[i]
                sel = ref.mask > 0.5
                cpus.append(cpu)
                walls.append(wall)
                ps.append(psnr(s.rgb, ref.rgb, sel))
                pf.append(psnr(s.rgb, ref.rgb))
            row = (name, float(np.mean(cpus)), float(np.mean(walls)), float(np.mean(ps)), float(np.mean(pf)))
            rows.append(row)
            print(f"{name:40s} {row[1]:7.2f} CPU s {row[2]:6.2f} s  PSNR subject {row[3]:6.2f} dB  frame {row[4]:6.2f} dB",
                  flush=True)
        for base_name in [r[0] for r in rows[:3]]:
            b = next(r for r in rows if r[0] == base_name)
            ok = [r for r in rows if r[3] >= b[3] - 0.05 and r[0] != base_name]
            if ok:
                best = min(ok, key=lambda r: r[1])
                print(f"cheapest at least as good as {base_name} ({b[3]:.2f} dB): {best[0]} "
                      f"({best[3]:.2f} dB) -> {b[1] / best[1]:.2f}x less CPU time")
        if args.persistent:
            st = candidates(args.spp)
            chosen = st.get(f"synthgen_v1_{args.spp}spp")
            n = max(6, len(indices))
            for persistent in (False, True):
                job = resolve_job(args.config, {**base, "num_samples": n,
                                                **{f"render.{k}": v for k, v in chosen.items()},
                                                "render.persistent_data": persistent})
                from synthgen.rendering.worker import render_sample

                r = BlenderRenderer(threads=args.threads)
                c0, w0 = time.process_time(), time.perf_counter()
                for i in range(n):
                    render_sample(r, job, i, tmp / f"persist_{persistent}")
                print(f"persistent_data={persistent}: {(time.process_time() - c0) / n:.2f} CPU s/sample, "
                      f"{(time.perf_counter() - w0) / n:.2f} s/sample over {n} samples", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        os._exit(0)  # bpy can deadlock at interpreter exit


if __name__ == "__main__":
    main()
