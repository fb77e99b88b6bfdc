"""``synthgen render``: plan a job, run it on Ray workers, write a sample store.

Orchestration:
- The driver validates the config and resolves every asset before starting Ray (bad input -> exit 2).
- One long-lived :class:`RenderActor` per worker slot (``render.threads_per_worker`` CPUs each)
  holds a warm Blender scene (:class:`synthgen.blender.BlenderRenderer`) and keeps it between
  samples; it re-imports only when the scan changes.
- Work is grouped by scan: an idle actor gets the next sample of the scan it already holds, and
  only switches scans when that scan's queue is empty (then it takes the longest queue).
- Workers write samples straight into the output store (a shared filesystem on a cluster) and
  return the small JSON record; arrays never travel through the object store.
- ``ray.init()`` with no address starts an embedded local cluster; ``--address`` joins one.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import write_json_atomic
from .config import ConfigError, Job, resolve_job
from .contract import META_DIR
from .sampling import plan, sample_key

log = logging.getLogger("synthgen.render")


class RenderActorImpl:
    """The body of a Ray render actor (also usable in-process, e.g. for benchmarks)."""

    def __init__(self, job: dict, out_dir: str, previews: bool, threads: int):
        from .blender import BlenderRenderer

        self.job = Job.model_validate(job)
        self.out_dir = out_dir
        self.previews = previews
        self.renderer = BlenderRenderer(threads=threads)

    def render(self, index: int) -> dict[str, Any]:
        """Render one sample; never raises: failures come back as ``{"index", "error"}``."""
        from .worker import render_sample

        try:
            res = render_sample(self.renderer, self.job, index, self.out_dir, previews=self.previews)
            return {"index": index, "key": res["key"], "timings": res["timings"],
                    "resamples": res["resamples"], "scan_id": res["record"]["subject_id"]}
        except Exception as exc:  # reported per sample, the run continues
            log.exception("sample %d failed", index)
            return {"index": index, "key": sample_key(self.job, index), "error": f"{type(exc).__name__}: {exc}"}

    def pid(self) -> int:
        return os.getpid()


def describe_plan(job: Job, indices: list[int]) -> dict[str, Any]:
    groups = plan(job, indices)
    return {
        "num_samples": len(indices),
        "first_key": sample_key(job, indices[0]) if indices else None,
        "samples_per_scan": {k: len(v) for k, v in groups.items()},
        "scans": [{"id": s.id, "path": s.path, "size": s.size.model_dump(exclude_none=True)} for s in job.scans],
        "hdris": [{"id": h.id, "path": h.path} for h in job.hdris],
    }


def _next_index(queues: dict[str, deque], current_scan: str | None) -> tuple[str, int] | None:
    if current_scan is not None and queues.get(current_scan):
        return current_scan, queues[current_scan].popleft()
    nonempty = [s for s, q in queues.items() if q]
    if not nonempty:
        return None
    scan = max(nonempty, key=lambda s: len(queues[s]))
    return scan, queues[scan].popleft()


def run_render(job: Job, out_dir: str | os.PathLike, indices: list[int] | None = None,
               workers: int | None = None, address: str | None = None,
               progress: bool = True) -> dict[str, Any]:
    """Render ``indices`` (default: all samples of the job) into ``out_dir`` on Ray.

    Returns:
        Summary dict: ``written``, ``failed`` (list of {index, key, error}), ``wall_s``,
        ``samples_per_min``, ``workers``, summed ``timings`` (setup_s, render_s, write_s) and
        ``resamples``.
    """
    import ray
    from tqdm import tqdm

    cfg = job.config
    out = Path(out_dir).resolve()
    indices = list(range(cfg.num_samples)) if indices is None else sorted(set(indices))
    meta = out / META_DIR
    meta.mkdir(parents=True, exist_ok=True)
    write_json_atomic(meta / "store.json", {
        "kind": "synthgen.store/1", "source": "synthetic", "synthgen_version": __version__,
        "config_path": job.config_path, "config": cfg.model_dump(mode="json"),
        "plan": describe_plan(job, list(range(cfg.num_samples))),
    })
    started_ray = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(**kwargs)
        started_ray = True
    try:
        threads = cfg.render.threads_per_worker
        n_cpu = int(ray.cluster_resources().get("CPU", 1))
        n_workers = workers or cfg.workers or max(1, n_cpu // threads)
        n_workers = max(1, min(n_workers, len(indices)))
        Actor = ray.remote(num_cpus=threads)(RenderActorImpl)
        job_dict = job.model_dump(mode="json")
        actors = [Actor.remote(job_dict, str(out), cfg.output.previews, threads) for _ in range(n_workers)]
        groups = plan(job, indices)
        queues = {s: deque(v) for s, v in groups.items()}
        log.info("rendering %d samples (%s) with %d worker(s) x %d thread(s) into %s",
                 len(indices), ", ".join(f"{s}: {len(v)}" for s, v in groups.items()), n_workers, threads, out)
        t0 = time.perf_counter()
        inflight: dict[Any, int] = {}
        actor_scan: dict[int, str | None] = {i: None for i in range(n_workers)}
        # two calls in flight per actor: the next sample is queued while the current one renders
        for _ in range(2):
            for a in range(n_workers):
                nxt = _next_index(queues, actor_scan[a])
                if nxt:
                    actor_scan[a] = nxt[0]
                    inflight[actors[a].render.remote(nxt[1])] = a
        results, failed = [], []
        bar = tqdm(total=len(indices), desc="render", unit="sample", disable=not progress, file=sys.stderr)
        while inflight:
            done, _ = ray.wait(list(inflight), num_returns=1)
            a = inflight.pop(done[0])
            res = ray.get(done[0])
            (failed if "error" in res else results).append(res)
            if "error" in res:
                log.error("%s failed: %s", res["key"], res["error"])
            bar.update(1)
            nxt = _next_index(queues, actor_scan[a])
            if nxt:
                actor_scan[a] = nxt[0]
                inflight[actors[a].render.remote(nxt[1])] = a
        bar.close()
        wall = time.perf_counter() - t0
        for a in actors:
            ray.kill(a)
    finally:
        if started_ray:
            ray.shutdown()
    timings = {k: sum(r["timings"][k] for r in results) for k in ("setup_s", "render_s", "write_s")}
    summary = {
        "written": len(results), "failed": failed, "wall_s": wall, "workers": n_workers,
        "threads_per_worker": threads,
        "samples_per_min": 60.0 * len(results) / wall if wall > 0 else 0.0,
        "timings": timings, "resamples": sum(r["resamples"] for r in results),
    }
    if failed:
        write_json_atomic(meta / "failures.json", failed)
    return summary


def _parse_indices(s: str) -> list[int]:
    out: list[int] = []
    for part in s.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def cmd_render(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.num_samples is not None:
        overrides["num_samples"] = args.num_samples
    if args.seed is not None:
        overrides["seed"] = args.seed
    try:
        job = resolve_job(args.config, overrides)
        indices = None
        if args.indices:
            try:
                indices = _parse_indices(args.indices)
            except ValueError:
                raise ConfigError(f"--indices: {args.indices!r} is not a list like 0,3,5-9") from None
            bad = [i for i in indices if not 0 <= i < job.config.num_samples]
            if bad:
                raise ConfigError(f"--indices: {bad} outside [0, {job.config.num_samples}) (num_samples)")
    except ConfigError as exc:
        print(f"synthgen render: error: {exc}", file=sys.stderr)
        return 2
    out_dir = args.out or job.config.output.dir
    if args.dry_run:
        todo = indices if indices is not None else list(range(job.config.num_samples))
        import yaml

        pl = describe_plan(job, todo)
        print(yaml.safe_dump({"config": job.config.model_dump(mode="json", exclude_none=True),
                              "out": str(Path(out_dir).resolve()), "plan": pl}, sort_keys=False), end="")
        print(f"# dry run: {pl['num_samples']} samples over {len(pl['samples_per_scan'])} scan(s) "
              f"{pl['samples_per_scan']} and {len(pl['hdris'])} HDRI(s); nothing rendered")
        return 0
    summary = run_render(job, out_dir, indices=indices, workers=args.workers, address=args.address,
                         progress=not args.no_progress)
    t = summary["timings"]
    print(f"synthgen render: wrote {summary['written']} samples to {Path(out_dir).resolve()} in "
          f"{summary['wall_s']:.1f} s ({summary['samples_per_min']:.1f} samples/min; "
          f"{summary['workers']} worker(s); Cycles {t['render_s']:.1f} s, setup {t['setup_s']:.1f} s, "
          f"write {t['write_s']:.1f} s summed over workers; {summary['resamples']} re-sample(s)); "
          f"{len(summary['failed'])} failed")
    return 1 if summary["failed"] else 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "render", help="render synthetic samples with Blender on Ray",
        description="Render a job: each sample is KEY.rgb.exr, KEY.depth.exr, KEY.mask.exr and KEY.json "
                    "(see docs/sample_format.md). Runs on an embedded local Ray cluster unless --address is given.",
        epilog="examples:\n  synthgen render --config configs/portrait.yaml\n"
               "  synthgen render --config configs/smoke.yaml --out /tmp/smoke --num-samples 2\n"
               "  synthgen render --config configs/portrait.yaml --dry-run\n"
               "  synthgen render --config configs/portrait.yaml --address auto   # inside a Ray cluster",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="job YAML (e.g. configs/portrait.yaml)")
    p.add_argument("--out", help="output store folder (default: output.dir of the config, relative to the current directory)")
    p.add_argument("--num-samples", type=int, help="override num_samples")
    p.add_argument("--seed", type=int, help="override the global seed")
    p.add_argument("--workers", type=int, help="number of Blender workers (default: CPUs / render.threads_per_worker)")
    p.add_argument("--address", help="Ray cluster address to join (e.g. auto or ray://host:10001); default: start a local one")
    p.add_argument("--indices", help="render only these sample indices, e.g. 0,3,5-9 (same parameters as in a full run)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and the plan, render nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_render)
