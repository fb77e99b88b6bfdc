"""Driver memory and start-up time against the number of planned samples (issue 15, item 4).

For each N, starts the real CLI (``synthgen render`` on the smoke job at 32x32, 1 spp, one worker)
with ``--num-samples N`` into a fresh store, waits for the first written sample (planning, store.json,
Ray start and the scheduler's first window are then done), reads the driver's peak and current RSS
(``VmHWM``/``VmRSS`` in /proc) and interrupts it (Ctrl-C). Prints one line per N: seconds to the
``run_start`` event and to the first sample, and the driver's RSS in MiB.

Usage: python benchmarks/driver_memory.py [--n 10000 100000 1000000] [--tree DIR] [--timeout 900]

``--tree`` runs another checkout's code (its folder goes first on PYTHONPATH), e.g. to compare with
the main branch. Ray itself accounts for ~150-250 MiB of the driver's RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _status(pid: int) -> dict[str, float]:
    out = {}
    try:
        for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = ln.partition(":")
            if k in ("VmHWM", "VmRSS"):
                out[k] = int(v.split()[0]) / 1024
    except OSError:
        pass
    return out


def _events(out: Path) -> list[dict]:
    p = out / "_meta" / "ledger.jsonl"
    if not p.exists():
        return []
    return [json.loads(ln) for ln in p.read_text().splitlines() if ln.endswith("}")]


def run_one(n: int, tree: Path, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="driver_memory_") as tmp:
        out = Path(tmp) / "store"
        env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1",
                   PYTHONPATH=str(tree) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cmd = [sys.executable, "-m", "synthgen.cli", "render", "--config", str(tree / "configs" / "smoke.yaml"),
               "--out", str(out), "--num-samples", str(n), "--workers", "1", "--set", "render.width=32",
               "--set", "render.height=32", "--set", "render.samples=1", "--no-progress"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tree, env=env)
        res: dict = {"n": n, "run_start_s": None, "first_sample_s": None}
        peak = 0.0
        try:
            while time.perf_counter() - t0 < timeout and proc.poll() is None:
                st = _status(proc.pid)
                peak = max(peak, st.get("VmHWM", 0.0))
                ev = _events(out)
                if res["run_start_s"] is None and any(e["event"] == "run_start" for e in ev):
                    res["run_start_s"] = round(time.perf_counter() - t0, 1)
                if any(e["event"] == "sample_done" for e in ev):
                    res["first_sample_s"] = round(time.perf_counter() - t0, 1)
                    res.update(peak_rss_mb=round(st.get("VmHWM", peak)), rss_mb=round(st.get("VmRSS", 0.0)))
                    break
                time.sleep(0.2)
            else:
                res.update(peak_rss_mb=round(peak), rss_mb=None, note=f"no sample within {timeout:.0f} s")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
        return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--tree", type=Path, default=ROOT, help="checkout whose code runs (default: this one)")
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args()
    print(f"code: {args.tree}")
    print(f"{'planned':>12} {'run_start s':>12} {'1st sample s':>13} {'peak RSS MiB':>13} {'RSS MiB':>8}")
    for n in args.n:
        r = run_one(n, args.tree.resolve(), args.timeout)
        print(f"{r['n']:>12} {r['run_start_s']!s:>12} {r['first_sample_s']!s:>13} {r['peak_rss_mb']!s:>13} "
              f"{r['rss_mb']!s:>8} {r.get('note', '')}", flush=True)


if __name__ == "__main__":
    main()
