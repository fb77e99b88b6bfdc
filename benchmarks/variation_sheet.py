"""Contact sheet of poses and relights: renders a few views of a variation config in-process and
writes one PNG row per view (K relights | clean depth | simulated sensor depth | mask).

Usage: .venv/bin/python benchmarks/variation_sheet.py [configs/variation.yaml] [out/variation_sheet.png]
       [--views 6] [--size 96x128] [--samples 16] [--full-body]
Prints seconds per sample.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from synthgen.rendering.blender import BlenderRenderer  # noqa: E402
from synthgen.rendering.config import resolve_job  # noqa: E402
from synthgen.contract import member_path, read_sample  # noqa: E402
from synthgen.exr import read_exr  # noqa: E402
from synthgen.rendering.preview import colourise_depth, srgb_encode  # noqa: E402
from synthgen.rendering.worker import render_sample  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", nargs="?", default=os.path.join(ROOT, "configs", "variation.yaml"))
    ap.add_argument("out", nargs="?", default=os.path.join(ROOT, "out", "variation_sheet.png"))
    ap.add_argument("--views", type=int, default=6)
    ap.add_argument("--size", default="96x128")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--full-body", action="store_true", help="frame the whole subject (camera.target: center)")
    a = ap.parse_args()
    w, h = (int(x) for x in a.size.split("x"))
    over = {"render.width": w, "render.height": h, "render.samples": a.samples}
    if a.full_body:  # whole subject in frame, to judge the pose
        over.update({"camera.target": "center", "camera.subject_fraction": {"dist": "uniform", "low": 0.75, "high": 0.9}})
    job = resolve_job(a.config, overrides=over)
    K = job.config.relights_per_view
    r = BlenderRenderer(threads=2)
    rows, t0 = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as store:
        for v in range(a.views):
            tiles = []
            for k in range(K):
                res = render_sample(r, job, v * K + k, store)
                s = read_sample(store, res["key"])
                tiles.append((srgb_encode(s.rgb) * 255 + 0.5).astype(np.uint8))
            tiles.append(colourise_depth(s.depth))
            sensor = member_path(store, res["key"], "depth_sensor.exr")
            if sensor.exists():
                tiles.append(colourise_depth(read_exr(sensor, ["Z"])["Z"]))
            m = (np.clip(s.mask, 0, 1) * 255 + 0.5).astype(np.uint8)
            tiles.append(np.repeat(m[..., None], 3, -1))
            rows.append(np.concatenate(tiles, 1))
            pose = res["record"]["render"].get("pose", {})
            print(f"view {v}: scan {res['record']['subject_id']}, posed joints "
                  f"{[j['joint'] for j in pose.get('joints', [])]}, subject yaw {pose.get('subject_yaw_deg')}")
    n = a.views * K
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)).save(a.out)
    print(f"{n} samples in {time.perf_counter() - t0:.1f} s ({(time.perf_counter() - t0) / n:.2f} s/sample) -> {a.out}")


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # bpy's delayed-close thread can deadlock at interpreter exit (see tests/conftest.py)
