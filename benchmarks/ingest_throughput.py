"""Ingest throughput on a TUM RGB-D sequence (640x480): per-stage costs, and frames/s per core run
locally (one process) and on Ray (an embedded local Ray, ``--address local``), with and without
person detection + segmentation.

Builds an N-frame TUM sequence in a temporary folder from the 3 real fixture frames (each copy gets
one pixel changed so no frame is an exact duplicate), then:

1. times the stages of one frame (median over the frames): decode (PNG colour + 16-bit depth),
   sRGB -> linear, validate, person detection, selfie segmentation, and each of the three lossless
   (ZIP) EXR encodes plus the JSON record (``synthgen.contract.write_sample``);
2. times ``synthgen.ingest.ingest`` end to end in-process (1 core) and on an embedded Ray with
   ``--ray-cpus`` CPUs, and reports frames/s and frames/s per core.

Both wall time and CPU time are reported. On a shared machine wall time measures the contention;
CPU time (``time.process_time`` for stages and in-process runs; for Ray the CPU time of the driver,
every ``ray::`` worker, the raylet and the GCS, read per process with psutil) measures the work, so
"frames per CPU-second" is the per-core throughput an unloaded core would reach.

Usage: PYTHONPATH=. RAY_AUTH_MODE=disabled python benchmarks/ingest_throughput.py [--frames 40] [--ray-cpus 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
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


def stage_costs(src: Path, tmp: Path, n: int) -> dict[str, float]:
    """Median (wall ms, CPU ms) per stage over the first ``n`` frames (one process)."""
    from synthgen.contract import member_path
    from synthgen.exr import camera_attributes, write_exr
    from synthgen.ingest.common import srgb8_to_linear
    from synthgen.ingest.formats import detect_format
    from synthgen.ingest.options import IngestOptions
    from synthgen.ingest.segment import person_evidence, person_mask
    from synthgen.ingest.validate import validate

    opts = IngestOptions()
    reader = detect_format(src)
    refs = [r for r in reader.scan(src, opts) if r.error is None][:n]
    t: dict[str, list[tuple[float, float]]] = {k: [] for k in (
        "decode", "srgb_to_linear", "validate", "person_detection",
                                                  "segmentation", "exr_rgb_half_zip", "exr_depth_float_zip",
                                                  "exr_mask_half_zip")}
    person_evidence(np.zeros((64, 64, 3), np.uint8), 0.75)  # model load, not timed
    person_mask(np.zeros((64, 64, 3), np.uint8))
    class clock:
        def __init__(self, name):
            self.name = name

        def __enter__(self):
            self.w, self.c = time.perf_counter(), time.process_time()

        def __exit__(self, *exc):
            t[self.name].append((time.perf_counter() - self.w, time.process_time() - self.c))

    for i, ref in enumerate(refs):
        with clock("decode"):
            frame = reader.load(ref, opts)
        with clock("srgb_to_linear"):
            lin = srgb8_to_linear(frame.rgb)
        with clock("validate"):
            validate(frame, frame.rgb, opts.thresholds)
        with clock("person_detection"):
            person_evidence(frame.rgb, 0.75)
        with clock("segmentation"):
            mask = person_mask(frame.rgb)
        rgb16 = lin.astype(np.float16)
        with clock("exr_rgb_half_zip"):
            write_exr(member_path(tmp, f"s{i}", "rgb.exr"), {"R": rgb16[..., 0], "G": rgb16[..., 1],
                                                             "B": rgb16[..., 2]})
        with clock("exr_depth_float_zip"):
            write_exr(member_path(tmp, f"s{i}", "depth.exr"), {"Y": frame.depth},
                      camera_attributes(np.asarray(frame.K), None))
        with clock("exr_mask_half_zip"):
            write_exr(member_path(tmp, f"s{i}", "mask.exr"), {"Y": mask.astype(np.float16)})
    return {k: (1000 * statistics.median(a for a, _ in v), 1000 * statistics.median(b for _, b in v))
            for k, v in t.items()}


def ray_cpu_times() -> dict[int, float]:
    """CPU seconds used so far by every Ray process (workers, raylet, GCS), by pid."""
    import psutil

    out = {}
    for pr in psutil.process_iter(["name", "cmdline"]):
        try:
            cmd = " ".join(pr.info["cmdline"] or [])
            if pr.pid != os.getpid() and ("ray::" in cmd or pr.info["name"] in ("raylet", "gcs_server")):
                ct = pr.cpu_times()
                out[pr.pid] = ct.user + ct.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def ray_cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two :func:`ray_cpu_times` snapshots (processes that started in
    between count fully; processes that exited in between are lost: keep workers alive)."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--ray-cpus", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    mpl = tempfile.mkdtemp(prefix="bench-mplconfig-")  # one value for every run: Ray reuses its workers
    os.environ.setdefault("MPLCONFIGDIR", mpl)
    from synthgen.ingest import IngestOptions, ingest

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "rgbd_dataset_freiburg1_bench"
        make_sequence(src, args.frames)
        costs = stage_costs(src, tmp / "stages", min(12, args.frames))
        print("stage costs, median per 640x480 frame (1 process):      wall ms    CPU ms")
        for k, (w, c) in costs.items():
            print(f"  {k:22s}                             {w:7.1f}   {c:7.1f}")
        for label, keys in (("without masks", ("decode", "srgb_to_linear", "validate", "exr_rgb_half_zip",
                                               "exr_depth_float_zip", "exr_mask_half_zip")),
                            ("with masks", tuple(costs))):
            w, c = sum(costs[k][0] for k in keys), sum(costs[k][1] for k in keys)
            print(f"  sum {label:14s} {w:7.1f} wall / {c:7.1f} CPU ms -> {1000 / c:.1f} frames per CPU-second")
        import ray

        ray.init(address="local", num_cpus=args.ray_cpus, include_dashboard=False, logging_level="WARNING")
        try:
            for seg in (False, True):
                for mode in ("local", "ray"):
                    out = tmp / f"out_{seg}_{mode}"
                    opts = IngestOptions(segment=seg, address=None if mode == "local" else "auto")
                    if mode == "ray":  # warm the workers (process start, imports, models) outside the timing
                        ingest(src, tmp / f"warm_{seg}", opts, progress=False)
                    p0, r0 = time.process_time(), ray_cpu_times()
                    t = time.perf_counter()
                    rep = ingest(src, out, opts, progress=False)
                    dt = time.perf_counter() - t
                    cpu = time.process_time() - p0
                    if mode == "ray":
                        cpu += ray_cpu_used(r0, ray_cpu_times())
                    cores = 1 if mode == "local" else args.ray_cpus
                    c = rep["counts"]
                    print(f"segmentation={'on ' if seg else 'off'} {mode:5s} ({cores} core(s)): {c['ingested']}/"
                          f"{c['found']} frames in {dt:.2f} s wall = {c['found'] / dt / cores:.1f} frames/s per "
                          f"core; {cpu:.1f} CPU-s = {c['found'] / cpu:.1f} frames per CPU-second")
        finally:
            ray.shutdown()
            shutil.rmtree(mpl, ignore_errors=True)


if __name__ == "__main__":
    main()
