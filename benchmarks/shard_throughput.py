"""Shard write throughput vs a plain sequential copy of the same bytes, and peak RSS.

Usage::

    python benchmarks/shard_throughput.py [--samples 150] [--size 512] [--workdir /tmp/shard_bench]

Builds a store of ``--samples`` samples of ``--size``² pixels (real EXR files via
synthgen.contract.write_sample), then on the same disk measures ``--repeat`` runs of each mode
(after one untimed warm-up round; rounds interleave the modes so page cache and disk state are
shared fairly) and reports the **median** and the min-max spread:

* **copy**: a plain sequential copy of every file of the store (the member files and records, i.e.
  the bytes a shard holds; ``shutil.copyfileobj``, 1 MiB buffer) into ~shard-sized output files,
  each fsync'ed and renamed: the durability a shard gets;
* **shard**: ``synthgen.shard.pack`` (default: each member's sha256 checked against its record) and
  with ``check_inputs=False``; ``--encode train`` is reported in samples/s.

Throughput is input bytes per second for every mode (the same bytes), so the ratio is
``copy seconds / shard seconds`` (tar headers and padding, ~0.3 % more bytes, are not credited to
the shard). Inputs are in the page cache for both (the store was just built and warmed up);
``sync`` runs before each timed run so neither inherits the other's pending writeback.
Each run happens in a fresh subprocess (import time excluded), which reports its own peak RSS
(``VmHWM``). Peak RSS is also measured for a dataset three times larger to show that memory does
not grow with the dataset. Target (issue 5): shard throughput >= 0.8x the copy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, os, resource, shutil, sys, time
from pathlib import Path
mode, store, out, shard_bytes = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
shutil.rmtree(out, ignore_errors=True)
if mode != "copy":
    from synthgen.shard import pack  # import time is not throughput
os.sync()  # no writeback left over from the previous run
t0 = time.perf_counter()
if mode == "copy":
    out.mkdir(parents=True)
    files = sorted(p for p in Path(store).iterdir() if p.is_file())
    size, fh, k = 0, None, 0
    def close(fh, k):
        fh.flush(); os.fsync(fh.fileno()); fh.close()
        os.replace(out / f".tmp-{k}", out / f"copy-{k:06d}.bin")
    for p in files:
        if fh is None:
            fh = open(out / f".tmp-{k}", "wb")
        with open(p, "rb") as src:
            shutil.copyfileobj(src, fh, 1 << 20)
        size += p.stat().st_size
        if size >= shard_bytes:
            close(fh, k); fh, size, k = None, 0, k + 1
    if fh is not None:
        close(fh, k)
else:
    kw = dict(split="train=1", shard_size=shard_bytes, progress=False)
    if mode == "shard_nocheck":
        kw["check_inputs"] = False
    if mode == "train":
        kw["encode"] = "train"
    m = pack([store], out, **kw)
dt = time.perf_counter() - t0
# VmHWM (peak RSS of this exec'd image); ru_maxrss would include the forking parent's RSS
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
rss = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": dt, "rss_mib": rss}))
"""


def make_store(root: Path, n: int, size: int, offset: int = 0) -> int:
    import numpy as np

    from synthgen.contract import write_sample

    root.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in range(offset, offset + n):
        key = f"bench_{i:06d}"
        if (root / f"{key}.json").exists():
            continue
        rng = np.random.default_rng(i)
        base = np.stack([xx, yy, 1 - xx], -1) * rng.uniform(0.2, 2.0)
        rgb = base + rng.normal(0, 0.02, base.shape)  # noise keeps EXR ZIP from collapsing the files
        r = np.hypot(xx - 0.5, yy - 0.45)
        mask = np.clip((0.3 - r) * 40, 0, 1)
        depth = np.where(mask > 0, 1.2 + 0.3 * r + rng.normal(0, 0.002, r.shape), 0.0)
        rec = {"source": "synthetic", "subject_id": f"scan{i % 7}", "synthgen_version": "0.1.0",
               "camera": {"K": [[size, 0, (size - 1) / 2], [0, size, (size - 1) / 2], [0, 0, 1]]},
               "depth": {"kind": "planar_z", "units": "metres", "metric": True, "invalid_value": 0.0},
               "render": {"params": {"focal_length_mm": 50.0}}}
        write_sample(root, key, rgb, depth, mask, rec)
    return sum(p.stat().st_size for p in root.iterdir() if p.is_file())


def run(mode: str, store: Path, out: Path, shard_bytes: int) -> dict:
    res = subprocess.run([sys.executable, "-c", CHILD, mode, str(store), str(out), str(shard_bytes)],
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=150)
    ap.add_argument("--size", type=int, default=512, help="image width = height in pixels")
    ap.add_argument("--shard-size", type=int, default=100_000_000, help="bytes per shard / copy file")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per mode (median reported)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/shard_bench"))
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    wd = args.workdir
    store = wd / "store"
    t = time.perf_counter()
    nbytes = make_store(store, args.samples, args.size)
    print(f"store: {args.samples} samples of {args.size}x{args.size}, {nbytes / 1e6:.1f} MB "
          f"(built in {time.perf_counter() - t:.1f} s) in {store}")
    os.sync()
    modes = ("copy", "shard", "shard_nocheck")
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for rnd in range(args.repeat + 1):  # round 0 warms up; rounds interleave the modes
        for mode in modes:
            r = run(mode, store, wd / f"out_{mode}", args.shard_size)
            if rnd:
                runs[mode].append(r)
    med = {m: statistics.median(r["seconds"] for r in runs[m]) for m in modes}
    print(f"median of {args.repeat} runs each (input bytes/s; spreads: min-max over runs, ratio per round)")
    print(f"{'mode':<26}{'MB/s':>7}{'spread MB/s':>14}{'ratio':>7}{'ratio spread':>14}{'peak RSS MiB':>14}")
    mb, mc = nbytes / 1e6, med["copy"]
    for mode, label in (("copy", "plain copy (fsync)"), ("shard", "shard (sha256 check)"),
                        ("shard_nocheck", "shard --no-check-inputs")):
        lo, hi = min(r["seconds"] for r in runs[mode]), max(r["seconds"] for r in runs[mode])
        rss = max(r["rss_mib"] for r in runs[mode])
        # ratio spread: per round, this mode against the copy of the same round
        paired = [c["seconds"] / r["seconds"] for c, r in zip(runs["copy"], runs[mode])]
        print(f"{label:<26}{mb / med[mode]:>7.0f}{f'{mb / hi:.0f}-{mb / lo:.0f}':>14}{mc / med[mode]:>7.2f}"
              f"{f'{min(paired):.2f}-{max(paired):.2f}':>14}{rss:>14.0f}")
    tr = run("train", store, wd / "out_train", args.shard_size)
    print(f"--encode train: {args.samples / tr['seconds']:.1f} samples/s ({args.size}x{args.size}), "
          f"peak RSS {tr['rss_mib']:.0f} MiB")
    # memory does not grow with the dataset: 3x the samples
    big = wd / "store_big"
    if not big.exists():
        shutil.copytree(store, big)
    make_store(big, 2 * args.samples, args.size, offset=args.samples)
    big_bytes = sum(p.stat().st_size for p in big.iterdir() if p.is_file())
    rb = run("shard", big, wd / "out_big", args.shard_size)
    print(f"peak RSS: {max(r['rss_mib'] for r in runs['shard']):.0f} MiB for {args.samples} samples, "
          f"{rb['rss_mib']:.0f} MiB for {3 * args.samples} samples ({big_bytes / 1e6:.0f} MB)")
    if not args.keep:
        shutil.rmtree(wd, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
