"""synthgen's Ray render farm against a naive single-process loop (issue 3, benchmark c).

The naive loop is what users write by hand: for every sample, reset Blender, import the scan, load the
HDRI, set everything up and render with all CPU threads in one process. It uses the very same code for
one sample (``BlenderRenderer`` + ``render_sample``), only rebuilt per sample, so the images and
settings are identical: same scan, HDRIs, resolution and samples per pixel.

synthgen: ``run_render`` with its defaults (one warm Blender actor per CPU, grouped by scan).

Two comparisons (issue 3, benchmark c):

* same settings: both render the config as it is (``--set`` applies to both);
* equal quality: ``--naive-set`` gives the naive loop other settings, e.g. Blender's defaults at the
  same samples per pixel (``--naive-set render.adaptive_threshold=0.01 --naive-set render.max_bounces=12
  --naive-set render.env_map_resolution=0 ...``), while synthgen keeps its tuned defaults;
  ``benchmarks/render_quality.py`` measures that the two are of equal quality (PSNR against a
  1024-spp reference of the same samples).

Usage:
    python benchmarks/render_vs_naive.py [--config configs/portrait.yaml] [--num-samples 8] [--scan lee_perry_smith]
        [--set KEY=VALUE ...] [--naive-set KEY=VALUE ...]
Prints samples/min for both and the speed-up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from synthgen.rendering.config import resolve_job
from synthgen.rendering.driver import run_render

ROOT = Path(__file__).resolve().parent.parent


def naive(job, out: Path, n: int) -> float:
    from synthgen.rendering.blender import BlenderRenderer
    from synthgen.rendering.worker import render_sample

    t0 = time.perf_counter()
    for i in range(n):
        r = BlenderRenderer(threads=os.cpu_count() or 1)  # factory reset: the whole scene is rebuilt
        render_sample(r, job, i, out)
        r._hdri_images.clear()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "portrait.yaml"))
    ap.add_argument("--num-samples", type=int, default=8)
    ap.add_argument("--scan", default="lee_perry_smith", help="scan id to use for every sample")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for both (YAML value), e.g. render.samples=16")
    ap.add_argument("--naive-set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for the naive loop only")
    args = ap.parse_args()
    import yaml

    def parse(items):
        out = {}
        for item in items:
            k, v = item.split("=", 1)
            out[k] = yaml.safe_load(v)
        return out

    overrides = {"num_samples": args.num_samples, "output.previews": False, **parse(args.set)}
    job = resolve_job(args.config, overrides)
    naive_job = resolve_job(args.config, {**overrides, **parse(args.naive_set)})
    for j in (job, naive_job):
        j.scans = [s for s in j.scans if s.id == args.scan]
        if not j.scans:
            raise SystemExit(f"--scan {args.scan}: no such scan in {args.config}")
    tmp = Path(tempfile.mkdtemp(prefix="synthgen-naive-"))
    try:
        t_naive = naive(naive_job, tmp / "naive", args.num_samples)
        s = run_render(job, tmp / "farm", progress=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = args.num_samples

    def desc(j):
        rs = j.config.render
        return (f"{rs.width}x{rs.height}, {rs.samples} spp, adaptive {rs.adaptive_threshold}, max bounces "
                f"{rs.max_bounces}, env map {rs.env_map_resolution or 'automatic'}, denoise {rs.denoise}")

    print(f"machine: {os.cpu_count()} CPUs; config {Path(args.config).name}, scan {args.scan}, {n} samples")
    print(f"naive loop (rebuild per sample, {os.cpu_count()} threads; {desc(naive_job)}): {t_naive:.1f} s -> "
          f"{60 * n / t_naive:.2f} samples/min")
    print(f"synthgen settings: {desc(job)}")
    print(f"synthgen ({s['workers']} workers x {s['threads_per_worker']} thread): {s['wall_s']:.1f} s -> "
          f"{s['samples_per_min']:.2f} samples/min (includes Ray start-up and worker warm-up)")
    print(f"speed-up: {t_naive / s['wall_s']:.2f}x")


if __name__ == "__main__":
    main()
