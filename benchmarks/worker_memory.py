"""Memory of one Blender worker over many renders (issue 3, benchmark d).

Renders ``--renders`` samples in one ``BlenderRenderer`` (as a Ray actor would, without recycling),
switching scans every ``--switch-every`` samples so imports and orphan purges are exercised, and
prints the process RSS (MiB) after warm-up and at the end, and the growth in percent.

Usage: python benchmarks/worker_memory.py [--renders 300] [--switch-every 25]
Target (issue 3): growth <= 10 %.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from synthgen.rendering.config import resolve_job

ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "smoke.yaml"))
    ap.add_argument("--renders", type=int, default=300)
    ap.add_argument("--switch-every", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=30)
    args = ap.parse_args()
    from synthgen.rendering.blender import BlenderRenderer
    from synthgen.rendering.worker import render_sample

    job = resolve_job(args.config, {"num_samples": args.renders, "render.samples": 1})
    r = BlenderRenderer(threads=1)
    tmp = Path(tempfile.mkdtemp(prefix="synthgen-mem-"))
    scans = job.scans
    trace = []
    t0 = time.perf_counter()
    try:
        for i in range(args.renders):
            job.scans = [scans[(i // args.switch_every) % len(scans)]]
            render_sample(r, job, i, tmp)
            for p in tmp.glob(f"*_{i:06d}.*"):
                p.unlink()
            trace.append(rss_mb())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    warm = trace[args.warmup - 1]
    end = trace[-1]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.renders} renders ({job.config.render.width}x{job.config.render.height}), scan switch every "
          f"{args.switch_every}, {time.perf_counter() - t0:.0f} s")
    print("RSS MiB every 25 renders: " + ", ".join(f"{trace[k]:.0f}" for k in range(0, len(trace), 25)))
    print(f"RSS after {args.warmup} renders: {warm:.0f} MiB; after {args.renders}: {end:.0f} MiB; "
          f"growth {100 * (end - warm) / warm:+.1f} %; peak {peak:.0f} MiB")


if __name__ == "__main__":
    main()
