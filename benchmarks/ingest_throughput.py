"""Ingest throughput on a TUM RGB-D sequence (640x480): frames/s for validate + write, with and
without MediaPipe segmentation, for 1 and 2 worker processes.

Builds an N-frame TUM sequence in a temporary folder from the 3 real fixture frames (each copy gets
one pixel changed so no frame is an exact duplicate), then times ``synthgen.ingest.ingest``.
Also times ``synthgen.contract.write_sample`` alone, the floor set by the sample format (ZIP EXR).

Usage: .venv/bin/python benchmarks/ingest_throughput.py [--frames 60]
Target (issue 4): >= 100 frames/s without segmentation on 2 cores for 640x480.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

FIX = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "ingest" / "tum_rgbd_fr1_xyz"


def make_sequence(dst: Path, n: int) -> None:
    rgb_lines = (FIX / "rgb.txt").read_text().splitlines()[3:]
    depth_lines = (FIX / "depth.txt").read_text().splitlines()[3:]
    (dst / "rgb").mkdir(parents=True)
    (dst / "depth").mkdir()
    rgbs = [np.asarray(Image.open(FIX / ln.split()[1]).convert("RGB")) for ln in rgb_lines]
    depths = [np.asarray(Image.open(FIX / ln.split()[1])) for ln in depth_lines]
    r_out, d_out = ["# rgb"], ["# depth"]
    t0 = 1305031102.0
    for i in range(n):
        t = t0 + i * 0.0333
        rgb = rgbs[i % 3].copy()
        rgb[0, 0] = (i % 256, i // 256, 7)
        Image.fromarray(rgb).save(dst / "rgb" / f"{t:.6f}.png", compress_level=1)
        Image.fromarray(depths[i % 3]).save(dst / "depth" / f"{t + 0.005:.6f}.png", compress_level=1)
        r_out.append(f"{t:.6f} rgb/{t:.6f}.png")
        d_out.append(f"{t + 0.005:.6f} depth/{t + 0.005:.6f}.png")
    (dst / "rgb.txt").write_text("\n".join(r_out) + "\n")
    (dst / "depth.txt").write_text("\n".join(d_out) + "\n")
    shutil.copy(FIX / "groundtruth.txt", dst / "groundtruth.txt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    args = ap.parse_args()
    from synthgen.contract import write_sample
    from synthgen.ingest import IngestOptions, ingest

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "rgbd_dataset_freiburg1_bench"
        make_sequence(src, args.frames)
        # floor: write_sample alone
        rgb = np.random.default_rng(0).random((480, 640, 3), dtype=np.float32)
        depth = np.full((480, 640), 1.5, np.float32)
        rec = {"source": "real", "subject_id": "x", "camera": {"K": [[500, 0, 319.5], [0, 500, 239.5], [0, 0, 1]]},
               "depth": {}, "synthgen_version": "bench"}
        t = time.perf_counter()
        for i in range(10):
            write_sample(tmp / "floor", f"k{i}", rgb, depth, np.ones((480, 640), np.float32), rec)
        print(f"write_sample alone (1 process): {10 / (time.perf_counter() - t):.1f} samples/s")
        for seg in (False, True):
            for workers in (1, 2):
                out = tmp / f"out_{seg}_{workers}"
                t = time.perf_counter()
                rep = ingest(src, out, IngestOptions(segment=seg, workers=workers), progress=False)
                dt = time.perf_counter() - t
                c = rep["counts"]
                print(f"segmentation={'on ' if seg else 'off'} workers={workers}: {c['ingested']}/{c['found']} "
                      f"frames in {dt:.2f} s = {c['found'] / dt:.1f} frames/s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the main process: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
