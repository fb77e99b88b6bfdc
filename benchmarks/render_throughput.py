"""Render throughput of a job (default: configs/portrait.yaml) on the embedded Ray cluster.

Prints samples per minute and where the time goes: scene setup (scan import, HDRI, camera),
Cycles render calls, and writing (EXR encoding, checksums, previews), summed over workers, plus
the driver's wall time and the overhead ratio wall / (Cycles time / workers).

Usage:
    python benchmarks/render_throughput.py [--config configs/portrait.yaml] [--num-samples N] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
from pathlib import Path

from synthgen.rendering.config import resolve_job
from synthgen.rendering.driver import run_render

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "portrait.yaml"))
    ap.add_argument("--num-samples", type=int)
    ap.add_argument("--workers", type=int)
    args = ap.parse_args()
    overrides = {"num_samples": args.num_samples} if args.num_samples else {}
    job = resolve_job(args.config, overrides)
    out = Path(tempfile.mkdtemp(prefix="synthgen-bench-"))
    try:
        s = run_render(job, out, workers=args.workers, progress=False)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    t = s["timings"]
    total = sum(t.values())
    rs = job.config.render
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}")
    print(f"config: {Path(args.config).name}, {s['written']} samples, {rs.width}x{rs.height}, "
          f"{rs.samples} spp, adaptive {rs.adaptive_threshold}, denoise {rs.denoise}; "
          f"{s['workers']} worker(s) x {s['threads_per_worker']} thread(s)")
    print(f"wall: {s['wall_s']:.1f} s -> {s['samples_per_min']:.2f} samples/min ({len(s['failed'])} failed, "
          f"{s['resamples']} re-samples)")
    for k, label in (("setup_s", "scene setup"), ("render_s", "Cycles render"), ("write_s", "writing")):
        print(f"  {label:14s} {t[k]:8.1f} s summed over workers ({100 * t[k] / total:5.1f} %)")
    print(f"overhead: wall / (Cycles time per worker) = {s['wall_s'] / (t['render_s'] / s['workers']):.3f}")


if __name__ == "__main__":
    main()
