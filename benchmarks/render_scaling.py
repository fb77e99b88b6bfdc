"""Render throughput with 1, 2 and 3 simulated Ray nodes on this machine (issue 3, benchmark e).

Each simulated node is a ``ray.cluster_utils.Cluster`` node with ``--cpus-per-node`` CPUs; the driver
joins the cluster with ``address=`` exactly as ``synthgen render --address`` does. On one physical
machine the nodes share its cores, so this measures the orchestration's scaling overhead, not more
hardware.

Usage: python benchmarks/render_scaling.py [--config configs/smoke.yaml] [--num-samples 12] [--cpus-per-node 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from synthgen.rendering.config import resolve_job
from synthgen.rendering.driver import run_render

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "smoke.yaml"))
    ap.add_argument("--num-samples", type=int, default=12)
    ap.add_argument("--cpus-per-node", type=int, default=1)
    args = ap.parse_args()
    from ray.cluster_utils import Cluster

    job = resolve_job(args.config, {"num_samples": args.num_samples, "output.previews": False})
    print(f"machine: {os.cpu_count()} CPUs; {Path(args.config).name}, {args.num_samples} samples, "
          f"{args.cpus_per_node} CPU(s) per simulated node")
    for nodes in (1, 2, 3):
        cluster = Cluster(initialize_head=True,
                          head_node_args={"num_cpus": args.cpus_per_node, "include_dashboard": False})
        tmp = Path(tempfile.mkdtemp(prefix="synthgen-scale-"))
        try:
            for _ in range(nodes - 1):
                cluster.add_node(num_cpus=args.cpus_per_node)
            cluster.wait_for_nodes()
            s = run_render(job, tmp, address=cluster.address, progress=False)
        finally:
            import ray

            ray.shutdown()
            cluster.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"{nodes} node(s): {s['workers']} workers, {s['written']} samples in {s['wall_s']:.1f} s -> "
              f"{s['samples_per_min']:.1f} samples/min")


if __name__ == "__main__":
    main()
