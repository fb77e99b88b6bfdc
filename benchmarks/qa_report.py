"""Benchmark: ``synthgen qa`` on 10,000 small samples — wall time and peak RSS.

Target (issue 6): <= 60 s and <= 1.5 GB on 2 cores.

The store is generated cheaply outside the timed part: 32x32 samples (unique arrays, 70 % synthetic
and 30 % real-like records, 200 subjects over train/val/test splits), written straight with the
OpenEXR package (no fsync) plus their JSON records with the contract's sha256 fields. The timed
part runs ``synthgen qa STORE --out REPORT`` in a subprocess (HTML, plots and contact sheets
included); peak RSS is the child's ``ru_maxrss``.

Usage::

    .venv/bin/python benchmarks/qa_report.py [--samples 10000] [--size 32] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import OpenEXR

ROOT = Path(__file__).resolve().parents[1]


def _exr(path: Path, channels: dict[str, np.ndarray]) -> dict:
    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}, channels) as f:
        f.write(str(path))
    data = path.read_bytes()
    return {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def generate(store: Path, n: int, size: int, seed: int = 0) -> None:
    store.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    splits = ["train"] * 8 + ["val", "test"]
    for i in range(n):
        real = i % 10 >= 7
        subject = f"subj_{i % 200:03d}"
        split = splits[(i % 200) % 10]
        cx, cy, r = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.15, 0.35)
        rr = ((xx - cx) ** 2 + (yy - cy) ** 2) / r ** 2
        mask = (rr <= 1).astype(np.float16)
        z = rng.uniform(0.4, 2.5)
        depth = np.where(rr <= 1, z + 0.1 * rr, 0 if not real else z + 1.5).astype(np.float32)
        if real:
            depth[rng.random(depth.shape) < 0.1] = 0  # sensor holes
        rgb = (rng.uniform(0.05, 0.6, 3)[None, None] * (1 - 0.3 * rr[..., None].clip(0, 1))
               + 0.02 * rng.random((size, size, 3))).astype(np.float16)
        key = f"s{i:07d}"
        files = {
            "rgb.exr": _exr(store / f"{key}.rgb.exr", {"R": rgb[..., 0].copy(), "G": rgb[..., 1].copy(),
                                                      "B": rgb[..., 2].copy()}),
            "depth.exr": _exr(store / f"{key}.depth.exr", {"Z": depth}),
            "mask.exr": _exr(store / f"{key}.mask.exr", {"Y": mask}),
        }
        f_mm = rng.uniform(24, 85)
        fx = f_mm / 36.0 * size
        rec = {"schema": "synthgen.sample/1", "key": key, "source": "real" if real else "synthetic",
               "subject_id": subject, "split": split, "image": {"width": size, "height": size},
               "camera": {"K": [[fx, 0, (size - 1) / 2], [0, fx, (size - 1) / 2], [0, 0, 1]],
                          "camera_to_world": None,
                          "fov_x_deg": math.degrees(2 * math.atan(size / (2 * fx))),
                          "fov_y_deg": math.degrees(2 * math.atan(size / (2 * fx)))},
               "depth": {"kind": "planar_z", "units": "metres", "metric": True, "invalid_value": 0.0},
               "mask": {}, "files": files, "synthgen_version": "0.1.0"}
        if real:
            rec["capture"] = {"sensor": "bench_sensor"}
        else:
            rec["camera"].update(focal_length_mm=f_mm, sensor_width_mm=36.0, sensor_fit="horizontal")
            rec["render"] = {"params": {"yaw_deg": rng.uniform(-40, 40), "pitch_deg": rng.uniform(-15, 15),
                                        "roll_deg": 0.0, "hdri_id": f"hdri_{i % 7}", "scan_id": subject},
                             "camera": {"distance_m": z}, "scan": {"id": subject}, "hdri": {"id": f"hdri_{i % 7}"}}
        (store / f"{key}.json").write_text(json.dumps(rec))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=32, help="image width = height in pixels")
    ap.add_argument("--keep", help="keep the store and report in this folder")
    args = ap.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="qa_bench_"))
    store, report = base / "store", base / "report"
    try:
        t0 = time.perf_counter()
        if not (store / f"s{args.samples - 1:07d}.json").exists():
            generate(store, args.samples, args.size)
        print(f"generated {args.samples} samples of {args.size}x{args.size} in {time.perf_counter() - t0:.1f} s "
              "(not timed)")
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "synthgen.cli", "qa", str(store), "--out", str(report),
                            "--no-progress"], cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if p.returncode not in (0, 1):
            print(p.stdout, p.stderr, sep="\n")
            return 1
        doc = json.loads((report / "report.json").read_text())
        html_mb = (report / "report.html").stat().st_size / 1e6
        print(p.stdout.strip().splitlines()[-1])
        print(f"qa on {doc['statistics']['samples']} samples: {wall:.1f} s wall "
              f"({doc['statistics']['samples'] / wall:.0f} samples/s), peak RSS {rss_mb:.0f} MB, "
              f"report.html {html_mb:.1f} MB")
        ok = wall <= 60 and rss_mb <= 1536
        print(f"target <= 60 s and <= 1.5 GB: {'met' if ok else 'NOT met'}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
