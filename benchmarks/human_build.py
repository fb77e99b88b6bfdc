"""Build time of generated people: identity sampling + numpy build (``synthgen.humans``) and the
Blender objects (``BlenderRenderer.load_human``: build, objects, materials, rig, placement), per
identity, cold (first in a fresh process: asset parsing) and warm (caches filled).

    python benchmarks/human_build.py --identities 20

Prints one line per identity and the cold / warm medians. The render worker builds each identity
once and keeps it while it renders that identity's samples (work is grouped by subject).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=20)
    ap.add_argument("--config", default=str(ROOT / "configs" / "portrait.yaml"))
    args = ap.parse_args()

    t0 = time.perf_counter()
    from synthgen.humans import build_human, sample_identity
    from synthgen.rendering.blender import BlenderRenderer
    from synthgen.rendering.config import resolve_job
    t_import = time.perf_counter() - t0

    job = resolve_job(args.config)
    spec = job.config.subjects[0]
    numpy_s, total_s = [], []
    r = BlenderRenderer(threads=1)
    for j in range(args.identities):
        t1 = time.perf_counter()
        build_human(sample_identity(spec, job.config.seed, j))
        t2 = time.perf_counter()
        info = r.load_human(spec, job.config.seed, j)  # builds again (own cache) + Blender objects
        t3 = time.perf_counter()
        numpy_s.append(t2 - t1)
        total_s.append(info["build_s"] + info["blender_s"])
        print(f"identity {j:3d}: numpy build {t2 - t1:.3f} s; load_human {t3 - t2:.3f} s "
              f"(build {info['build_s']:.3f} s + Blender {info['blender_s']:.3f} s)", flush=True)
    print(f"import {t_import:.2f} s; cold (first identity): numpy {numpy_s[0]:.2f} s, load_human {total_s[0]:.2f} s; "
          f"warm median: numpy {statistics.median(numpy_s[1:]):.3f} s, "
          f"load_human {statistics.median(total_s[1:]):.3f} s over {len(total_s) - 1} identities; "
          f"machine: {os.cpu_count()} CPUs")
    sys.stdout.flush()
    os._exit(0)  # bpy's exit can hang (see tests/conftest.py)


if __name__ == "__main__":
    main()
